"""The papers' comparisons, read off bench/quality.py's results on every data instance.

    python bench/claims.py bench/results/quality*.json

Merges the rows of the given JSON files per data instance (the generator seed in each
file's ``data``; a row given twice for the same instance keeps the later file's), prints
per instance the table of linear top-1 (mean ± std over training seeds, and per seed), then
one line per claim and instance: the two rows' means, the gap, the larger of their two
standard deviations (the spread), whether the gap exceeds it, and on how many shared
training seeds the first row is ahead.
"""
import argparse
import json
import statistics
from typing import Dict, List, Tuple

# (claim, row expected ahead, row expected behind): Cl-InfoNCE Table 2 (attributes), Fig. 5
# and Table 5 (unsupervised clusters)
CLAIMS: Tuple[Tuple[str, str, str], ...] = (
    ("Cl-InfoNCE > clusters + cross-entropy (Table 2)", "clinfonce (attributes)",
     "cluster_ce (attributes)"),
    ("Cl-InfoNCE > CMC with attributes (Table 2)", "clinfonce (attributes)", "cmc_attributes"),
    ("K-means + Cl-InfoNCE > PCL (Fig. 5)", "clinfonce (kmeans)", "pcl"),
    ("K-means + Cl-InfoNCE > SwAV (Fig. 5)", "clinfonce (kmeans)", "swav"),
    ("K-means + Cl-InfoNCE > MoCo (Fig. 5)", "clinfonce (kmeans)", "mocov2"),
    ("K-means + Cl-InfoNCE > SimCLR (Fig. 5)", "clinfonce (kmeans)", "simclr"),
)


def load(paths: List[str]) -> Dict[int, Dict[str, Dict[int, float]]]:
    """{data seed: {row: {training seed: top-1}}} of the given quality.py JSON files."""
    merged: Dict[int, Dict[str, Dict[int, float]]] = {}
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        data_seed = int((result.get("data") or {}).get("seed", 0))
        for row, runs in result["runs"].items():
            merged.setdefault(data_seed, {})[row] = {
                int(seed): float(run["top1"]) for seed, run in zip(result["seeds"], runs)}
    return merged


def compare(ahead: Dict[int, float], behind: Dict[int, float]) -> Dict[str, float]:
    """Means, gap, spread (the larger sample std), whether gap > spread, and per-seed wins."""
    a, b = list(ahead.values()), list(behind.values())
    std = [statistics.stdev(v) if len(v) > 1 else float("nan") for v in (a, b)]
    gap = statistics.mean(a) - statistics.mean(b)
    spread = max(std)
    shared = sorted(set(ahead) & set(behind))
    return {"ahead": statistics.mean(a), "behind": statistics.mean(b), "gap": gap,
            "spread": spread, "exceeds": bool(abs(gap) > spread),
            "wins": sum(ahead[s] > behind[s] for s in shared), "shared": len(shared)}


def fmt(values) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def report(merged) -> str:
    lines = []
    for data_seed in sorted(merged):
        rows = merged[data_seed]
        lines += [f"data instance {data_seed} (generator seed {data_seed}):", "",
                  "| method | linear top-1 (%) | per training seed |", "| --- | --- | --- |"]
        for row, runs in rows.items():
            per_seed = " / ".join(f"{runs[s]:.1f}" for s in sorted(runs))
            lines.append(f"| {row} | {fmt(runs.values())} | {per_seed} |")
        lines.append("")
    lines += ["| claim | data | first | second | gap | spread | gap beyond spread | "
              "first ahead on seeds |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for claim, first, second in CLAIMS:
        for data_seed in sorted(merged):
            rows = merged[data_seed]
            if first not in rows or second not in rows:
                continue
            c = compare(rows[first], rows[second])
            lines.append(f"| {claim} | {data_seed} | {c['ahead']:.1f} | {c['behind']:.1f} | "
                         f"{c['gap']:+.1f} | {c['spread']:.1f} | "
                         f"{'yes' if c['exceeds'] else 'no'} | {c['wins']}/{c['shared']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="bench/quality.py JSON files")
    args = parser.parse_args(argv)
    text = report(load(args.results))
    print(text)
    return text


if __name__ == "__main__":
    main()
