"""How much class information the nearest neighbours of a pretrained backbone carry.

WCL's weak labels are only as good as the batch 1-NN graph: a same-component pair is a
positive of the swapped loss, so the fraction of those pairs that share the class is the
precision of WCL's supervision. This script measures it for pretrained checkpoints (and for
raw pixels as a reference) on a CUB-layout dataset:

    python bench/neighbour_quality.py RUN/simclr.ckpt RUN/wcl.ckpt [--data-root ...]

Columns, on the train split with the deterministic eval transform:
  * ``loo 1-nn``: leave-one-out 1-NN classification accuracy (cosine) over the whole split;
  * ``edge precision``: in random batches of ``--batch`` images, the fraction of 1-NN links
    i -> nn(i) whose two images share the class;
  * ``pair precision``: the fraction of same-component pairs (WCL's positives) sharing the
    class; ``chance`` is the same fraction for random pairs (sum_c p_c^2);
  * ``mean component``: mean weak-class size.
Features are the backbone's (what the linear probe sees), not a projection head's.
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clinfonce_plugin.clusters.components import nearest_neighbour, weak_labels  # noqa: E402


def loo_1nn_accuracy(feats: torch.Tensor, targets: torch.Tensor) -> float:
    """Leave-one-out 1-NN accuracy under cosine similarity."""
    f = F.normalize(feats.float(), dim=1)
    nn_idx = nearest_neighbour(f, f)
    return float((targets[nn_idx] == targets).float().mean())


def batch_graph_precision(feats: torch.Tensor, targets: torch.Tensor, batch: int, reps: int,
                          seed: int = 0) -> dict:
    """Means over ``reps`` random batches of the 1-NN edge and same-component pair precision."""
    f = F.normalize(feats.float(), dim=1)
    g = torch.Generator().manual_seed(seed)
    edge, pair, size = [], [], []
    for _ in range(reps):
        idx = torch.randperm(len(targets), generator=g)[:batch]
        v, t = f[idx], targets[idx]
        edge.append(float((t[nearest_neighbour(v, v)] == t).float().mean()))
        labels = weak_labels(v, v_all=v, gather=False)
        same = labels[:, None] == labels[None, :]
        same.fill_diagonal_(False)
        pairs = int(same.sum())
        pair.append(float((same & (t[:, None] == t[None, :])).sum()) / max(1, pairs))
        size.append(len(t) / (int(labels.max()) + 1))
    n = len(edge)
    return {"edge_precision": sum(edge) / n, "pair_precision": sum(pair) / n,
            "mean_component": sum(size) / n}


def chance_pair_precision(targets: torch.Tensor) -> float:
    p = torch.bincount(targets).double() / len(targets)
    return float((p * p).sum())


def evaluate(name: str, feats: torch.Tensor, targets: torch.Tensor, batch: int, reps: int
             ) -> dict:
    row = {"name": name, "loo_1nn": loo_1nn_accuracy(feats, targets)}
    row.update(batch_graph_precision(feats, targets, batch, reps))
    return row


def main(argv=None) -> list:
    from clinfonce_plugin.data.registry import build_dataset
    from clinfonce_plugin.evaluate.pretrained import extract_features, load_pretrained_backbone
    from clinfonce_plugin.data.transforms import eval_transform

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="pretrain checkpoints (args.json beside)")
    parser.add_argument("--data-root", default=os.path.join(REPO, "datasets/synthetic_cub"))
    parser.add_argument("--dataset", default="synthetic_cub")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    rows, cfg = [], None
    for ckpt in args.checkpoints:
        backbone, _, cfg = load_pretrained_backbone(ckpt)
        data, _, _ = build_dataset(args.dataset, args.data_root, "train",
                                   transform=eval_transform(cfg))
        feats, targets = extract_features(backbone, data, 256, 0)
        rows.append(evaluate(os.path.basename(ckpt), feats, targets, args.batch, args.reps))
    if cfg is not None:  # raw pixels through the same eval transform
        data, _, _ = build_dataset(args.dataset, args.data_root, "train",
                                   transform=eval_transform(cfg))
        pixels = torch.stack([data[i][0].flatten() for i in range(len(data))])
        targets = torch.as_tensor([int(data[i][1]) for i in range(len(data))])
        rows.append(evaluate("raw pixels", pixels, targets, args.batch, args.reps))
        chance = chance_pair_precision(targets)
        print(f"batch {args.batch}, {args.reps} random batches; chance pair precision "
              f"{chance:.3f}")
        print("| features | loo 1-nn | edge precision | pair precision | mean component |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['name']} | {r['loo_1nn']:.3f} | {r['edge_precision']:.3f} | "
                  f"{r['pair_precision']:.3f} | {r['mean_component']:.2f} |")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"chance_pair_precision": chance, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
