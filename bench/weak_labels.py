"""Weak-label generation time (WCL): (1) scipy vs torch connected components and the
similarity + top-1 search both need, for B = 512 / 2048 / 8192 L2-normalised embeddings;
(2) weak labels as a share of one WCL training step at batch 512 / 2048.

Every figure comes from stages that run alternately within each round (the order rotated
every round) and is a median over rounds, ratios as medians of per-round ratios, because
these machines are noisy (+-15-20 % run to run).

    python bench/weak_labels.py                 # full: B = 512, 2048, 8192; steps 512, 2048
    python bench/weak_labels.py --quick         # smoke: B = 256, step batch 32, 3 rounds
    python bench/weak_labels.py --json out.json # also write the figures as JSON

Output (1): one row per B with the median seconds of ``similarity + top-1``
(``clusters.components.nearest_neighbour``), ``scipy`` (``components_scipy``) and ``torch``
(``components_torch``) labelling, and the ratios scipy / torch and labelling / similarity.

Output (2): one row per step batch. The step is ``bench/wcl_step.py``'s: the ``wcl`` method
(two heads, two 32x32 views, no small crops) on ``--backbone``, forward + loss + backward +
SGD on random inputs. Its weak labels come from the step's own phi embeddings of the two
views; the shares of the step are those of ``labelling`` (``components_torch`` of the two
views' 1-NN graphs as one union, the call ``weak_labels_of_views`` makes), the same with
``components_scipy``, and ``weak labels`` (the method's whole weak-label call: normalise,
the two similarities + top-1 and the labelling). The step itself includes its weak labels.
"""
import argparse
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clinfonce_plugin.clusters.components import (  # noqa: E402
    components_scipy,
    components_torch,
    nearest_neighbour,
)
from _timing import alternate  # noqa: E402
from wcl_step import build_model, make_step  # noqa: E402


def bench(batch: int, dim: int, rounds: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + batch)
    v = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    nn_idx = nearest_neighbour(v, v)
    stages = {
        "similarity_top1": lambda: nearest_neighbour(v, v),
        "scipy": lambda: components_scipy(nn_idx),
        "torch": lambda: components_torch(nn_idx, validate=False),
    }
    # warm-up (allocations, scipy import paths) and a check that both label the same
    assert torch.equal(components_scipy(nn_idx), components_torch(nn_idx))
    timing = alternate(stages, rounds, "similarity_top1")
    med = {name: t["median_s"] for name, t in timing.items()}
    return {
        "batch": batch, "dim": dim, "rounds": rounds,
        "seconds": med,
        "per_round_seconds": {name: t["per_round_s"] for name, t in timing.items()},
        # medians of per-round ratios: robust to drifts in machine load
        "scipy_over_torch": statistics.median(
            s / t for s, t in zip(timing["scipy"]["per_round_s"], timing["torch"]["per_round_s"])),
        "torch_over_similarity": timing["torch"]["median_ratio"],
        "scipy_over_similarity": timing["scipy"]["median_ratio"],
    }


def step_share(batch: int, backbone: str, hidden: int, rounds: int, warmup: int) -> dict:
    """Weak labels of one WCL step as a share of the whole step (see the module docstring)."""
    model, opt, data = build_model("wcl", backbone, batch, 0, hidden)
    step = make_step(model, opt, data)
    for _ in range(warmup):
        step()
    with torch.no_grad():  # the step's phi embeddings of its two views
        v1, v2 = (model(crop)[model.weak_key] for crop in data[1][:2])
    rows = [F.normalize(v.float(), dim=1) for v in (v1, v2)]
    # the union of the two views' graphs, as weak_labels_of_views builds it
    union = torch.cat([nearest_neighbour(rows[0], rows[0]),
                       nearest_neighbour(rows[1], rows[1]) + batch])
    labels = components_torch(union, validate=False)
    assert torch.equal(labels, components_scipy(union))
    # single process: the gathered keys are the views themselves
    weak_call = lambda: model._weak_labels([v1, v2], [v1, v2], {}, data[2])  # noqa: E731
    y1, y2 = weak_call()
    assert torch.equal(y1, labels[:batch]) and torch.equal(y2, labels[batch:] - labels[batch])
    timing = alternate({
        "wcl_step": step,
        "labelling": lambda: components_torch(union, validate=False),
        "labelling_scipy": lambda: components_scipy(union),
        "weak_labels": weak_call,
    }, rounds, "wcl_step")
    return {
        "batch": batch, "backbone": backbone, "proj_hidden_dim": hidden,
        "proj_output_dim": int(v1.shape[1]), "views": 2, "rounds": rounds,
        "weak_label_backend": model.weak_label_backend,
        "seconds": {name: t["median_s"] for name, t in timing.items()},
        "per_round_seconds": {name: t["per_round_s"] for name, t in timing.items()},
        "share_of_step": {name: t["median_ratio"] for name, t in timing.items()
                          if name != "wcl_step"},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: B=256, step batch 32, 3 rounds")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension of (1)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--step-batches", type=int, nargs="+", default=None,
                        help="batches of (2) (default 512 2048)")
    parser.add_argument("--backbone", default="test_resnet", help="timm backbone of (2)")
    parser.add_argument("--hidden", type=int, default=2048,
                        help="proj_hidden_dim of both heads in (2)")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [256] if args.quick else [512, 2048, 8192]
    step_batches = args.step_batches or ([32] if args.quick else [512, 2048])
    rounds = args.rounds or (3 if args.quick else 15)
    results = {"benchmark": "weak_labels", "torch_threads": torch.get_num_threads(),
               "device": "cpu", "rows": [], "step_share": []}
    print(f"weak labels, D={args.dim}, {rounds} alternating rounds, medians "
          f"({torch.get_num_threads()} torch threads, CPU)")
    print(f"{'B':>6} | {'sim+top1 s':>11} | {'scipy s':>9} | {'torch s':>9} | "
          f"{'scipy/torch':>11} | {'torch/sim':>9} | {'scipy/sim':>9}")
    for batch in batches:
        row = bench(batch, args.dim, rounds)
        s = row["seconds"]
        print(f"{batch:>6} | {s['similarity_top1']:>11.5f} | {s['scipy']:>9.5f} | "
              f"{s['torch']:>9.5f} | {row['scipy_over_torch']:>11.2f} | "
              f"{row['torch_over_similarity']:>9.3f} | {row['scipy_over_similarity']:>9.3f}")
        results["rows"].append(row)
    print(f"\nshare of one wcl training step ({args.backbone}, heads feats-{args.hidden}-128, "
          f"2 views), {rounds} alternating rounds, medians of per-round ratios")
    print(f"{'batch':>6} | {'step s':>8} | {'labelling':>9} | {'scipy':>9} | "
          f"{'weak labels (sim+top1+labelling)':>32}")
    for batch in step_batches:
        row = step_share(batch, args.backbone, args.hidden, rounds,
                         warmup=1 if args.quick else 2)
        share = row["share_of_step"]
        print(f"{batch:>6} | {row['seconds']['wcl_step']:>8.3f} | {share['labelling']:>9.3%} | "
              f"{share['labelling_scipy']:>9.3%} | {share['weak_labels']:>32.3%}")
        results["step_share"].append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
