"""How much of the label information that attributes lack a pretrained backbone carries.

On the synthetic CUB, classes that share an attribute prototype ("twins") differ only in an
un-annotated cue. Attribute clusters cannot tell twins apart; labels can. So SupCon can beat
Cl-InfoNCE on attributes only by the twin separation it learns, and this script measures it
for pretrained checkpoints on a synthetic CUB (its manifest gives the prototypes):

    python bench/twin_separation.py RUN/supcon.ckpt RUN/clinfonce.ckpt [--data-root ...]

A multinomial logistic regression (full-batch L-BFGS, L2) is fitted on standardised
backbone features of the train split (eval transform) and read on the test split:
  * ``top-1``: class accuracy;
  * ``prototype acc.``: predicted and true class share the prototype;
  * ``twin separation``: among test images of twin classes whose prototype was predicted
    right, the fraction whose class is right; ``chance`` is what guessing among the twins
    gives (the mean of 1 / #classes sharing the prototype over those images).
It is a quick diagnostic probe, not the benchmark's linear protocol (``main_linear``).
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def twin_metrics(pred: np.ndarray, target: np.ndarray, class_prototype: np.ndarray) -> dict:
    """Accuracy, prototype accuracy and twin separation of class predictions.

    Args:
        pred, target: (N,) predicted and true class ids.
        class_prototype: (C,) prototype id of each class.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    proto = np.asarray(class_prototype)
    share = np.bincount(proto)[proto]  # classes sharing each class's prototype
    right_proto = proto[pred] == proto[target]
    twins = (share[target] > 1) & right_proto
    out = {"top1": float((pred == target).mean()), "prototype_acc": float(right_proto.mean()),
           "twin_images": int(twins.sum())}
    if twins.any():
        out["twin_separation"] = float((pred == target)[twins].mean())
        out["twin_chance"] = float((1.0 / share[target][twins]).mean())
    else:
        out["twin_separation"] = out["twin_chance"] = float("nan")
    return out


def fit_probe(x_train: torch.Tensor, y_train: torch.Tensor, num_classes: int,
              l2: float = 1e-3) -> torch.nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS on standardised features."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(x_train.shape[1], num_classes).double()
    x, y = x_train.double(), y_train.long()
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=1000, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def evaluate(train, test, class_prototype: np.ndarray) -> dict:
    (x_tr, y_tr), (x_te, y_te) = train, test
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    probe = fit_probe((x_tr - mean) / std, y_tr, len(class_prototype))
    with torch.no_grad():
        pred = probe(((x_te - mean) / std).double()).argmax(1)
    return twin_metrics(pred.numpy(), y_te.numpy(), class_prototype)


def main(argv=None) -> list:
    from clinfonce_plugin.data.registry import build_dataset
    from clinfonce_plugin.evaluate.pretrained import extract_features, load_pretrained_backbone
    from clinfonce_plugin.data.transforms import eval_transform

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="pretrain checkpoints (args.json beside)")
    parser.add_argument("--data-root", default=os.path.join(REPO, "datasets/synthetic_cub_bench"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    manifest_path = os.path.join(args.data_root, "synthetic_cub.json")
    if not os.path.isfile(manifest_path):
        parser.error(f"{manifest_path} not found: --data-root must be a synthetic CUB (its "
                     "manifest names each class's prototype)")
    with open(manifest_path) as f:
        class_prototype = np.array([c["prototype_id"] for c in json.load(f)["classes"]])

    rows = []
    for ckpt in args.checkpoints:
        backbone, _, cfg = load_pretrained_backbone(ckpt)
        splits = []
        for split in ("train", "test"):
            data, _, _ = build_dataset("synthetic_cub", args.data_root, split,
                                       transform=eval_transform(cfg))
            splits.append(extract_features(backbone, data, 256, 0))  # under no_grad
        rows.append({"name": os.path.basename(ckpt), **evaluate(*splits, class_prototype)})
    print("| encoder | top-1 | prototype acc. | twin separation | chance |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['top1']:.3f} | {r['prototype_acc']:.3f} | "
              f"{r['twin_separation']:.3f} | {r['twin_chance']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data_root": args.data_root, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
