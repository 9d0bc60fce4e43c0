"""``study plot``: the study's figures from the rows of one or more sweeps.

- a family sweep: accuracy against I(Z;T) and against H(Z|T) (Cl-InfoNCE Fig. 3),
  ``<family>.png``;
- a k sweep: accuracy against k, with I(Z;T) and H(Z|T) of the final k-means clusters
  beside it (Fig. 4), ``kmeans_k.png``;
- a level sweep: accuracy against the hierarchy level, with I(Z;T) and H(Z|T) (Fig. 6),
  ``levels.png``.

Beside each PNG the CSV of the points drawn (mean and sample standard deviation over the
seeds), and for all of them ``correlations.csv``: Spearman's rank correlation of each
accuracy with each measure, per seed, as mean and standard deviation over the seeds.
"""
import math
import os
import statistics
from typing import Dict, List, Sequence

import numpy as np

from ..errors import DataError
from ..utils.atomic import atomic_write_csv
from .sweep import ROWS, read_rows

MEASURES = ("I(Z;T)", "H(Z|T)", "H(Z)")
ACCURACIES = ("linear_top1", "knn_top1")
LABELS = {"linear_top1": "linear top-1 (%)", "knn_top1": "kNN top-1 (%)"}


def _mean_std(values: Sequence[float]):
    values = list(values)
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def points(rows: List[dict]) -> List[dict]:
    """One point per swept value (in sweep order of first appearance): the value, the
    measures and accuracies as mean and std over its seeds, the number of seeds."""
    order: Dict[str, List[dict]] = {}
    for r in rows:
        order.setdefault(str(r["value"]), []).append(r)
    out = []
    for value, group in order.items():
        p = {"value": group[0]["value"], "seeds": len(group),
             "clusters": statistics.mean(g["clusters"] for g in group)}
        for key in MEASURES + ACCURACIES:
            p[key], p[key + "_std"] = _mean_std(g[key] for g in group)
        out.append(p)
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is
    constant or there are fewer than 3 points."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or np.ptp(x) <= 1e-9 * max(1.0, np.abs(x).max()) or np.ptp(y) == 0:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def correlations(rows: List[dict], sweep: str) -> List[dict]:
    """Per accuracy and measure: Spearman's rho over the swept values of each seed, then
    mean, std and the per-seed values."""
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for acc in ACCURACIES:
        for measure in MEASURES + (("value",) if rows and rows[0]["kind"] != "member" else ()):
            rhos = []
            for s in seeds:
                mine = [r for r in rows if r["seed"] == s]
                rhos.append(spearman([r[measure] for r in mine], [r[acc] for r in mine]))
            finite = [r for r in rhos if not math.isnan(r)]
            mean, std = _mean_std(finite) if finite else (float("nan"), float("nan"))
            out.append({"sweep": sweep, "accuracy": acc,
                        "against": rows[0]["kind"] if measure == "value" else measure,
                        "rho_mean": mean, "rho_std": std, "seeds": len(finite),
                        "rho_per_seed": " ".join(f"{r:.3f}" for r in rhos)})
    return out


def _write_csv(path: str, rows: List[dict]) -> None:
    """``rows`` (dicts with the keys of the first, in its order) as CSV, floats to 6
    significant digits."""
    fields = list(rows[0]) if rows else []
    atomic_write_csv(path, fields, ([f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]
                                     for k in fields] for r in rows))


def _log_ticks(ax, xs) -> None:
    """A log x axis labelled at the swept values themselves."""
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(xs), [f"{x:g}" for x in xs])


def _accuracy_axes(ax, xs, pts, xlabel: str, log: bool = False):
    for acc, marker in zip(ACCURACIES, ("o", "s")):
        ax.errorbar(xs, [p[acc] for p in pts], yerr=[p[acc + "_std"] for p in pts],
                    marker=marker, capsize=3, label=LABELS[acc])
    if log:
        _log_ticks(ax, xs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize="small")


def figure_family(pts: List[dict], family: str, path: str) -> None:
    """Fig. 3: accuracy against I(Z;T) and against H(Z|T), one marker per member."""
    from ..evaluate.plots import new_figure, save_png

    fig = new_figure(10, 4, "study plot")
    left, right = fig.subplots(1, 2)
    ordered = sorted(pts, key=lambda p: p["I(Z;T)"])
    _accuracy_axes(left, [p["I(Z;T)"] for p in ordered], ordered, "I(Z;T) (bits)")
    ordered = sorted(pts, key=lambda p: p["H(Z|T)"])
    _accuracy_axes(right, [p["H(Z|T)"] for p in ordered], ordered, "H(Z|T) (bits)")
    seeds = max(p["seeds"] for p in pts)
    fig.suptitle(f"{family}: accuracy against the information measures ({seeds} seed(s); "
                 "mean ± std)", fontsize="medium")
    save_png(fig, path, keep_old=False)


def figure_sweep(pts: List[dict], kind: str, path: str) -> None:
    """Figs. 4 and 6: accuracy against k (or level), the measures against it beside."""
    from ..evaluate.plots import new_figure, save_png

    fig = new_figure(10, 4, "study plot")
    left, right = fig.subplots(1, 2)
    ordered = sorted(pts, key=lambda p: float(p["value"]))
    xs = [float(p["value"]) for p in ordered]
    name = "k (k-means clusters)" if kind == "k" else "hierarchy level"
    _accuracy_axes(left, xs, ordered, name, log=kind == "k")
    for measure, marker in (("I(Z;T)", "o"), ("H(Z|T)", "s")):
        right.errorbar(xs, [p[measure] for p in ordered],
                       yerr=[p[measure + "_std"] for p in ordered], marker=marker,
                       capsize=3, label=measure)
    if kind == "k":
        _log_ticks(right, xs)
    right.set_xlabel(name)
    right.set_ylabel("bits")
    right.legend(fontsize="small")
    seeds = max(p["seeds"] for p in pts)
    fig.suptitle(f"accuracy and cluster information against {name} ({seeds} seed(s); "
                 "mean ± std)", fontsize="medium")
    save_png(fig, path, keep_old=False)


def plot_sweeps(sweep_dirs: Sequence[str], out_dir: str) -> List[str]:
    """Writes the figures, their CSVs and ``correlations.csv`` for the sweeps in
    ``sweep_dirs``; returns the written paths.

    Raises:
        DataError: a directory without rows.
    """
    groups: Dict[str, List[dict]] = {}
    for d in sweep_dirs:
        rows = read_rows(os.path.join(d, ROWS))
        if not rows:
            raise DataError(f"study plot: {os.path.join(d, ROWS)} holds no rows (run "
                            f"'study sweep --out {d}' first)")
        for r in rows:
            key = r["family"] if r["kind"] == "member" else ("kmeans_k" if r["kind"] == "k"
                                                             else "levels")
            groups.setdefault(key, []).append(r)
    os.makedirs(out_dir, exist_ok=True)
    written, corr = [], []
    for name, rows in groups.items():
        pts = points(rows)
        png, table = os.path.join(out_dir, f"{name}.png"), os.path.join(out_dir, f"{name}.csv")
        _write_csv(table, pts)
        if rows[0]["kind"] == "member":
            figure_family(pts, name, png)
        else:
            figure_sweep(pts, rows[0]["kind"], png)
        corr += correlations(rows, name)
        written += [png, table]
        best = max(pts, key=lambda p: p["linear_top1"])
        print(f"[study] {name}: highest mean linear top-1 {best['linear_top1']:.2f} at "
              f"{rows[0]['kind']} = {best['value']} ({best['seeds']} seed(s))")
    path = os.path.join(out_dir, "correlations.csv")
    _write_csv(path, corr)
    written.append(path)
    return written
