"""``study plot``: the points drawn are the means and sample standard deviations over seeds,
the rank correlations equal scipy's Spearman per seed, and every figure has its PNG and CSV."""
import csv
import json
import os

import numpy as np
import pytest
from scipy.stats import spearmanr

from clinfonce_plugin.study.plot import plot_sweeps, spearman

pytest.importorskip("matplotlib")


def write_rows(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "rows.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def family_rows():
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1, 2):
        for m, mi in enumerate([2.5, 1.9, 1.2, 0.4]):
            rows.append({"run": f"member=label_gran_{m}/seed={seed}", "kind": "member",
                         "value": f"label_gran_{m}", "seed": seed, "family": "fixed_h_zt",
                         "I(Z;T)": mi, "H(Z|T)": 0.0, "H(Z)": mi, "clusters": 8 >> m,
                         "linear_top1": 40 + 10 * mi + float(rng.normal(0, 3)),
                         "knn_top1": 30 + float(rng.normal(0, 5))})
    return rows


def k_rows():
    rows = []
    for seed in (0, 1):
        for k, (mi, h) in zip([4, 8, 16], [(1.0, 2.0), (1.5, 1.6), (1.7, 1.5)]):
            rows.append({"run": f"k={k}/seed={seed}", "kind": "k", "value": k, "seed": seed,
                         "family": None, "I(Z;T)": mi + 0.1 * seed, "H(Z|T)": h,
                         "H(Z)": mi + h, "clusters": k, "linear_top1": 20 + k + seed,
                         "knn_top1": 50 - k * (seed + 1)})
    return rows


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_points_and_correlations(tmp_path):
    fam, ks = family_rows(), k_rows()
    write_rows(tmp_path / "a", fam)
    write_rows(tmp_path / "b", ks)
    written = plot_sweeps([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "plots"))
    for name in ("fixed_h_zt", "kmeans_k"):
        for ext in ("png", "csv"):
            path = tmp_path / "plots" / f"{name}.{ext}"
            assert str(path) in written and path.stat().st_size > 0
    assert (tmp_path / "plots" / "fixed_h_zt.png").read_bytes()[:4] == b"\x89PNG"

    points = read_csv(tmp_path / "plots" / "fixed_h_zt.csv")
    assert [p["value"] for p in points] == [f"label_gran_{m}" for m in range(4)]
    for p in points:
        acc = [r["linear_top1"] for r in fam if r["value"] == p["value"]]
        assert float(p["linear_top1"]) == pytest.approx(np.mean(acc), rel=1e-5)
        assert float(p["linear_top1_std"]) == pytest.approx(np.std(acc, ddof=1), rel=1e-5)
        assert int(p["seeds"]) == 3

    corr = {(c["sweep"], c["accuracy"], c["against"]): c
            for c in read_csv(tmp_path / "plots" / "correlations.csv")}
    for sweep, rows, against in (("fixed_h_zt", fam, "I(Z;T)"), ("kmeans_k", ks, "I(Z;T)"),
                                 ("kmeans_k", ks, "H(Z|T)")):
        for acc in ("linear_top1", "knn_top1"):
            per_seed = [spearmanr([r[against] for r in rows if r["seed"] == s],
                                  [r[acc] for r in rows if r["seed"] == s])[0]
                        for s in sorted({r["seed"] for r in rows})]
            c = corr[(sweep, acc, against)]
            assert float(c["rho_mean"]) == pytest.approx(np.mean(per_seed), abs=1e-5)
            assert float(c["rho_std"]) == pytest.approx(np.std(per_seed, ddof=1), abs=1e-5)
    # against k itself; knn falls with k on every seed
    assert float(corr[("kmeans_k", "knn_top1", "k")]["rho_mean"]) == pytest.approx(-1.0)
    # H(Z|T) is held at 0 in this family: no correlation is defined
    assert corr[("fixed_h_zt", "linear_top1", "H(Z|T)")]["rho_mean"] == "nan"


def test_spearman_ties_and_degenerate_cases():
    x, y = [1, 2, 2, 3, 5], [3, 1, 4, 1, 5]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))     # constant measure
    assert np.isnan(spearman([1, 2], [2, 1]))           # too few points
