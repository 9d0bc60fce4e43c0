"""Weak-label generation time (WCL): scipy vs torch connected components, and the
similarity + top-1 search both need, for B = 512 / 2048 / 8192 L2-normalised embeddings.

The three stages run alternately within each round (the order rotated every round) and the
figures are medians over rounds, because these machines are noisy (+-15-20 % run to run).

    python bench/weak_labels.py                 # full: B = 512, 2048, 8192
    python bench/weak_labels.py --quick         # smoke: B = 256, 3 rounds
    python bench/weak_labels.py --json out.json # also write the figures as JSON

Output: one row per B with the median seconds of ``similarity + top-1``
(``clusters.components.nearest_neighbour``), ``scipy`` (``components_scipy``) and ``torch``
(``components_torch``) labelling, and the ratios scipy / torch and labelling / similarity.
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: B=256, 3 rounds")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [256] if args.quick else [512, 2048, 8192]
    rounds = args.rounds or (3 if args.quick else 15)
    results = {"benchmark": "weak_labels", "torch_threads": torch.get_num_threads(),
               "device": "cpu", "rows": []}
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
