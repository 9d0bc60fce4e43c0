"""Offline kNN evaluation (solo-learn's ``main_knn.py``): frozen pretrained backbone, features
of the train/test splits extracted once (deterministic resize + centre crop, as in linear
evaluation), weighted kNN (``metrics.knn``) for every feature type, distance and k; then the
clustering quality of the features (spherical k-means scored by NMI and clustering accuracy,
``metrics.clustering``); tables printed and everything written as JSON.

Feature types: ``backbone`` (the backbone rebuilt from the pretrain config) and ``projector``
(the method's own projector module applied to the backbone features, ``projector.py``).
"""
import os
from typing import Optional

import omegaconf
import torch

from ..clusters.kmeans import spherical_kmeans
from ..config import check_knn_cfg
from ..data.indexed import TransformedImages
from ..data.transforms import eval_transform
from ..errors import ConfigError
from .pretrained import extract_features, load_pretrained_backbone, open_labelled_splits
from ..metrics.clustering import clustering_accuracy, normalized_mutual_information
from ..metrics.knn import weighted_knn_accuracy
from .projector import load_pretrained_projector
from ..run.zoo import default_output_dir, resolve_pretrained
from ..utils.atomic import atomic_write_json


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


# table columns: (row key, header, width, format)
KNN_COLUMNS = (("feature", "feature", -9, ""), ("distance", "distance", -10, ""),
               ("k", "k", 5, ""), ("top1", "top-1", 7, ".2f"), ("top5", "top-5", 7, ".2f"))
CLUSTERING_COLUMNS = (("feature", "feature", -9, ""), ("split", "split", -6, ""),
                      ("k", "k", 5, ""), ("nmi", "NMI", 7, ".4f"), ("acc", "ACC", 7, ".2f"))


def format_table(rows, columns=KNN_COLUMNS) -> str:
    """``rows`` as a text table; a negative width left-aligns the column."""
    def cell(value, width, fmt):
        return f"{value:{'<' if width < 0 else '>'}{abs(width)}{fmt}}"

    lines = [" ".join(cell(head, w, "") for _, head, w, _ in columns)]
    lines += [" ".join(cell(r[key], w, fmt) for key, _, w, fmt in columns) for r in rows]
    return "\n".join(lines)


@torch.no_grad()
def project(projector: torch.nn.Module, feats: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``projector`` applied to (N, D) backbone features in batches (eval mode)."""
    return torch.cat([projector(chunk) for chunk in feats.split(batch_size)])


def clustering_scores(feats: torch.Tensor, labels: torch.Tensor, k: int, ccfg) -> dict:
    """Spherical k-means (faiss, ``clusters.kmeans``) of ``feats`` into ``k`` clusters, scored
    against ``labels``: {"nmi" (0..1), "acc" (percent), "objective"}."""
    ids, _, objective = spherical_kmeans(feats.numpy(), k, iterations=ccfg.iterations,
                                         seed=ccfg.seed, nredo=ccfg.nredo)
    y = labels.numpy()
    return {"nmi": normalized_mutual_information(ids, y), "acc": clustering_accuracy(ids, y),
            "objective": float(objective)}


def clustering_rows(features: dict, labels: dict, num_classes: int, ccfg) -> list:
    """One row per feature type: the k-means scores on the ``ccfg.split`` features."""
    split = ccfg.split
    y = torch.cat([labels["train"], labels["test"]]) if split == "all" else labels[split]
    k = ccfg.k or num_classes
    if k > y.numel():
        raise ConfigError(f"clustering.k: {k} clusters for the {y.numel()} images of the "
                          f"{split} split; lower clustering.k")
    rows = []
    for feature, splits in features.items():
        x = torch.cat([splits["train"], splits["test"]]) if split == "all" else splits[split]
        scores = clustering_scores(x, y, k, ccfg)
        rows.append({"feature": feature, "split": split, "k": k, **scores})
    return rows


def knn_eval(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> dict:
    """Runs the kNN protocol (and the clustering scores); returns and writes
    {'rows': [{feature, distance, k, top1, top5}], 'clustering': [{feature, split, k, nmi,
    acc, objective}], ...} (accuracies in percent, NMI in [0, 1])."""
    cfg = check_knn_cfg(cfg, source)
    ckpt = resolve_pretrained(cfg.pretrained)
    backbone, dim, pre_cfg = load_pretrained_backbone(ckpt)
    train, test = open_labelled_splits(cfg, pre_cfg, "kNN evaluation")
    projector = None
    if "projector" in cfg.feature_type:
        # a method with cluster providers is built on a split's metadata; only its projector
        # is kept, so the split just read serves when it is of the pretrain run's dataset
        # (the same reader: the same kinds of metadata, wherever the files now are)
        info = train.info if cfg.data.dataset == pre_cfg.data.dataset else None
        projector = load_pretrained_projector(ckpt, pre_cfg, info)
    transform = eval_transform(pre_cfg)
    workers = int(cfg.data.num_workers)
    x_tr, y_tr = extract_features(backbone, TransformedImages(train.dataset, transform),
                                  cfg.feature_batch_size, workers)
    x_te, y_te = extract_features(backbone, TransformedImages(test.dataset, transform),
                                  cfg.feature_batch_size, workers)
    features = {}
    for feature in cfg.feature_type:
        if feature == "backbone":
            features[feature] = {"train": x_tr, "test": x_te}
        else:
            features[feature] = {"train": project(projector, x_tr, cfg.feature_batch_size),
                                 "test": project(projector, x_te, cfg.feature_batch_size)}
    ks, note = effective_ks(cfg.k, len(y_tr))
    if note:
        print(f"[clinfonce] note: {note}")
    rows = []
    for feature, splits in features.items():
        for distance in cfg.distance_function:
            acc = weighted_knn_accuracy(splits["train"], y_tr, splits["test"], y_te, ks,
                                        distance, cfg.temperature, train.num_classes,
                                        cfg.max_matrix_elements)
            rows += [{"feature": feature, "distance": distance, "k": k, "top1": acc[k][0],
                      "top5": acc[k][1]} for k in ks]
    clustering = []
    if cfg.clustering.enabled:
        clustering = clustering_rows(features, {"train": y_tr, "test": y_te},
                                     train.num_classes, cfg.clustering)
    results = {
        "rows": rows, "clustering": clustering, "temperature": cfg.temperature,
        "pretrained": ckpt, "method": pre_cfg.method, "dataset": cfg.data.dataset,
        "feature_dim": dim, "num_train": len(y_tr), "num_test": len(y_te),
    }
    if projector is not None:
        results["projector_dim"] = int(features["projector"]["train"].shape[1])
    out_dir = cfg.get("output_dir") or default_output_dir(cfg.pretrained, ckpt)
    name = cfg.get("name") or f"knn-{pre_cfg.name}"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    atomic_write_json(path, results, indent=2)
    text = (f"[clinfonce] kNN ({pre_cfg.method}, {cfg.data.dataset}; {len(y_tr)} train, "
            f"{len(y_te)} test, T={cfg.temperature} for cosine)\n{format_table(rows)}")
    if clustering:
        c = cfg.clustering
        text += (f"\n[clinfonce] clustering (spherical k-means, seed {c.seed}, {c.nredo} "
                 f"run(s) of {c.iterations} iterations; NMI in [0, 1], ACC in %)\n"
                 f"{format_table(clustering, CLUSTERING_COLUMNS)}")
    print(f"{text}\n-> {path}")
    return results
