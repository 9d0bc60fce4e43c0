"""PCL's concentration estimate phi against hand-computed cases."""
import math

import numpy as np
import pytest

from clinfonce_plugin.clusters.concentration import concentration


def _at(angle_deg, radius=1.0):
    a = math.radians(angle_deg)
    return [radius * math.cos(a), radius * math.sin(a)]


def test_hand_computed_case():
    # on the unit circle, a point at angle t from its unit prototype is 2 sin(t / 2) away
    half = math.degrees(2 * math.asin(0.25))  # the angle of distance 0.5
    rows = [
        (_at(60, 3.0), 0), (_at(-60, 0.5), 0),                        # cluster 0: 1, 1
        (_at(90), 1), (_at(150, 2.0), 1), (_at(30), 1),               # cluster 1: 0, 1, 1
        (_at(180 + half), 2), (_at(180 - half), 2), (_at(180 + half, 4.0), 2),
        (_at(180 - half), 2),                                          # cluster 2: 0.5 x 4
        (_at(-90), 3),                                                 # cluster 3: alone
    ]
    x = np.array([r[0] for r in rows], dtype=np.float32)  # norms must not matter
    ids = np.array([r[1] for r in rows])
    centroids = np.array([_at(0), _at(90), _at(180), _at(-90), [0.0, 0.0]])  # a padding row
    # PCL's phi: mean distance / log(Z + 10)
    phi = [1.0 / math.log(12), (2 / 3) / math.log(13), 0.5 / math.log(14)]
    phi.append(max(phi))  # the singleton takes the largest
    s = sorted(phi)       # numpy's linear percentiles of 4 values: positions 0.3 and 2.7
    low = s[0] + 0.3 * (s[1] - s[0])
    high = s[2] + 0.7 * (s[3] - s[2])
    clipped = [min(max(p, low), high) for p in phi]
    mean = sum(clipped) / 4
    expected = [0.1 * c / mean for c in clipped]
    got = concentration(x, ids, centroids, temperature=0.1)
    assert got.dtype == np.float32 and got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got.mean() == pytest.approx(0.1, rel=1e-5)
    assert got[2] == pytest.approx(0.1 * low / mean, rel=1e-5)  # clipped up to the 10th pct


def test_alpha_and_percentiles_are_the_formula_parameters():
    x = np.array([_at(10), _at(-10), _at(100), _at(80), _at(95)], dtype=np.float32)
    ids = np.array([0, 0, 1, 1, 1])
    centroids = np.array([_at(0), _at(90)])
    d0 = 2 * math.sin(math.radians(5))
    d1 = (2 * 2 * math.sin(math.radians(5)) + 2 * math.sin(math.radians(2.5))) / 3
    phi = [d0 / math.log(2 + 1.0), d1 / math.log(3 + 1.0)]
    expected = [0.5 * p / (sum(phi) / 2) for p in phi]
    got = concentration(x, ids, centroids, 0.5, alpha=1.0, clip_percentiles=(0, 100))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_degenerate_clusters_stay_positive():
    # every cluster a singleton: no estimate, every phi the temperature
    x = np.eye(3, dtype=np.float32)
    np.testing.assert_allclose(concentration(x, np.arange(3), np.eye(3), 0.2), [0.2] * 3)
    # a cluster of duplicates on its prototype has phi 0: it takes the smallest positive phi
    x = np.array([_at(0), _at(0), _at(80), _at(100), _at(170), _at(190)], dtype=np.float32)
    ids = np.array([0, 0, 1, 1, 2, 2])
    centroids = np.array([_at(0), _at(90), _at(180)])
    got = concentration(x, ids, centroids, 0.2, clip_percentiles=(0, 100))
    assert (got > 0).all()
    assert got[0] == pytest.approx(min(got[1], got[2]), rel=1e-6)


@pytest.mark.parametrize("args, match", [
    ((np.ones((3, 2)), np.array([0, 1]), np.ones((2, 2)), 0.1), r"ids must have shape \(3,\)"),
    ((np.ones((3, 2)), np.array([0, 2, 2]), np.ones((3, 2)), 0.1), "contiguous"),
    ((np.ones((3, 2)), np.array([0, 1, 1]), np.ones((1, 2)), 0.1), r"centroids must have shape"),
    ((np.ones((3, 2)), np.array([0, 1, 1]), np.ones((2, 2)), 0.0), "temperature must be > 0"),
])
def test_bad_inputs_are_rejected(args, match):
    with pytest.raises(ValueError, match=match):
        concentration(*args)
