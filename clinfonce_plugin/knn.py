"""Offline kNN evaluation (solo-learn's ``main_knn.py``): frozen pretrained backbone, features
of the train/test splits extracted once (deterministic resize + centre crop, as in linear
evaluation), weighted kNN (``metrics.knn``) for every distance and k, a table printed and
top-1/top-5 written as JSON.

Only backbone features are evaluated: the checkpoint loader rebuilds the backbone from
``args.json``; the projector of each method is built by that method and is not restored here.
"""
import json
import os
from typing import Optional

import omegaconf

from .config import check_knn_cfg
from .data.indexed import TransformedImages
from .data.transforms import eval_transform
from .linear import extract_features, load_pretrained_backbone, open_labelled_splits
from .metrics.knn import weighted_knn_accuracy
from .zoo import default_output_dir, resolve_pretrained


def effective_ks(ks, num_train: int):
    """``ks`` with each k clipped to ``num_train`` (order kept, duplicates dropped) and the
    note to print when any was clipped (else None)."""
    out = []
    for k in ks:
        k = min(int(k), num_train)
        if k not in out:
            out.append(k)
    clipped = [int(k) for k in ks if int(k) > num_train]
    note = None
    if clipped:
        note = (f"k {', '.join(map(str, clipped))} > {num_train} training samples: "
                f"evaluated as k={num_train}")
    return out, note


def format_table(rows) -> str:
    lines = [f"{'feature':<9} {'distance':<10} {'k':>5} {'top-1':>7} {'top-5':>7}"]
    for r in rows:
        lines.append(f"{r['feature']:<9} {r['distance']:<10} {r['k']:>5} {r['top1']:>7.2f} "
                     f"{r['top5']:>7.2f}")
    return "\n".join(lines)


def knn_eval(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> dict:
    """Runs the kNN protocol; returns and writes {'rows': [{feature, distance, k, top1,
    top5}], ...} (accuracies in percent)."""
    cfg = check_knn_cfg(cfg, source)
    ckpt = resolve_pretrained(cfg.pretrained)
    backbone, dim, pre_cfg = load_pretrained_backbone(ckpt)
    train, test = open_labelled_splits(cfg, pre_cfg, "kNN evaluation")
    transform = eval_transform(pre_cfg)
    workers = int(cfg.data.num_workers)
    x_tr, y_tr = extract_features(backbone, TransformedImages(train.dataset, transform),
                                  cfg.feature_batch_size, workers)
    x_te, y_te = extract_features(backbone, TransformedImages(test.dataset, transform),
                                  cfg.feature_batch_size, workers)
    ks, note = effective_ks(cfg.k, len(y_tr))
    if note:
        print(f"[clinfonce] note: {note}")
    rows = []
    for distance in cfg.distance_function:
        acc = weighted_knn_accuracy(x_tr, y_tr, x_te, y_te, ks, distance, cfg.temperature,
                                    train.num_classes, cfg.max_matrix_elements)
        rows += [{"feature": "backbone", "distance": distance, "k": k, "top1": acc[k][0],
                  "top5": acc[k][1]} for k in ks]
    results = {
        "rows": rows, "temperature": cfg.temperature, "pretrained": ckpt,
        "method": pre_cfg.method, "dataset": cfg.data.dataset, "feature_dim": dim,
        "num_train": len(y_tr), "num_test": len(y_te),
    }
    out_dir = cfg.get("output_dir") or default_output_dir(cfg.pretrained, ckpt)
    name = cfg.get("name") or f"knn-{pre_cfg.name}"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"[clinfonce] kNN ({pre_cfg.method}, {cfg.data.dataset}; {len(y_tr)} train, "
          f"{len(y_te)} test, T={cfg.temperature} for cosine)\n{format_table(rows)}\n"
          f"-> {path}")
    return results
