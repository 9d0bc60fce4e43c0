"""I(Z;T), H(Z|T), H(Z) against hand-computed tables, a slow reference and identities."""
import math
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from clinfonce_plugin.metrics.information import (
    conditional_entropy,
    contingency,
    entropy,
    mutual_information,
)


def _h(*probs):
    """Entropy in bits of an explicit distribution, for writing expectations."""
    return -sum(p * math.log2(p) for p in probs if p > 0)


def _reference(z, t):
    """Slow loop reference in bits: (H(Z), H(T), H(Z,T), I, H(Z|T)) from Counters."""
    n = len(z)
    cz, ct, czt = Counter(z.tolist()), Counter(t.tolist()), Counter(zip(z.tolist(), t.tolist()))
    hz = -sum(c / n * math.log2(c / n) for c in cz.values())
    ht = -sum(c / n * math.log2(c / n) for c in ct.values())
    hzt = -sum(c / n * math.log2(c / n) for c in czt.values())
    mi = sum(c / n * math.log2((c / n) / ((cz[a] / n) * (ct[b] / n))) for (a, b), c in czt.items())
    return hz, ht, hzt, mi, hzt - ht


# --- hand-computed tables -------------------------------------------------------------

def test_aligned_table():
    # z = t, 2 equal classes:     t=0  t=1
    #                      z=0     2    0
    #                      z=1     0    2
    # H(Z) = H(T) = 1 bit, I = 1 bit, H(Z|T) = 0
    z = np.array([0, 0, 1, 1])
    t = np.array([0, 0, 1, 1])
    assert entropy(z) == pytest.approx(1.0)
    assert mutual_information(z, t) == pytest.approx(1.0)
    assert conditional_entropy(z, t) == pytest.approx(0.0, abs=1e-15)


def test_two_by_two_table_with_arbitrary_values():
    # z values {7, -3}, t values {10, 42}:   t=10  t=42
    #                                 z=-3     0     1
    #                                 z=7      2     1
    # H(Z) = H(3/4, 1/4) = 0.811278 bits, H(T) = 1, H(Z,T) = H(1/2, 1/4, 1/4) = 1.5
    # H(Z|T): given t=10 z is fixed (0 bits), given t=42 z is a fair coin (1 bit) -> 0.5
    # I = H(Z) - H(Z|T) = 0.311278 bits
    z = np.array([7, 7, 7, -3])
    t = np.array([10, 10, 42, 42])
    assert entropy(z) == pytest.approx(0.8112781244591328)
    assert conditional_entropy(z, t) == pytest.approx(0.5)
    assert mutual_information(z, t) == pytest.approx(0.8112781244591328 - 0.5)
    table = contingency(z, t)
    assert sp.issparse(table)
    np.testing.assert_array_equal(table.toarray(), [[0, 1], [2, 1]])


def test_three_by_two_table():
    #        t=0  t=1
    #  z=0    2    0
    #  z=1    1    1
    #  z=2    0    2
    # H(Z) = log2 3 = 1.584963, H(T) = 1
    # H(Z|T) = H(2/3, 1/3) = 0.918296 (same for both columns)
    # I = log2 3 - H(2/3, 1/3) = 2/3 bit exactly
    z = np.array([0, 0, 1, 1, 2, 2])
    t = np.array([0, 0, 0, 1, 1, 1])
    assert entropy(z) == pytest.approx(math.log2(3))
    assert entropy(t) == pytest.approx(1.0)
    assert conditional_entropy(z, t) == pytest.approx(0.9182958340544896)
    assert mutual_information(z, t) == pytest.approx(2 / 3)
    # the other direction: H(T|Z) = 1/3 * H(1/2, 1/2) = 1/3 bit
    assert conditional_entropy(t, z) == pytest.approx(1 / 3)


def test_single_cluster_has_no_information():
    # one cluster: H(Z) = 0, I = 0, H(Z|T) = 0 whatever T is
    z = np.zeros(10, dtype=np.int64)
    t = np.arange(10) % 3
    assert entropy(z) == 0.0
    assert mutual_information(z, t) == 0.0
    assert conditional_entropy(z, t) == 0.0


# --- identities ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_matches_slow_reference_and_identities(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    z = rng.integers(-5, 20, size=n)
    t = rng.integers(0, 7, size=n) * 3 - 4
    hz, ht, hzt, mi, h_cond = _reference(z, t)
    assert entropy(z) == pytest.approx(hz, abs=1e-12)
    assert entropy(t) == pytest.approx(ht, abs=1e-12)
    assert mutual_information(z, t) == pytest.approx(max(mi, 0.0), abs=1e-12)
    assert conditional_entropy(z, t) == pytest.approx(h_cond, abs=1e-12)
    # I = H(Z) - H(Z|T), symmetric, bounded by both entropies
    i_zt = mutual_information(z, t)
    assert i_zt == pytest.approx(entropy(z) - conditional_entropy(z, t), abs=1e-12)
    assert i_zt == pytest.approx(mutual_information(t, z), abs=1e-12)
    assert 0.0 <= i_zt <= min(entropy(z), entropy(t)) + 1e-12
    assert conditional_entropy(z, t) >= 0.0


@pytest.mark.parametrize("n, classes", [(12, 3), (100, 4), (64, 64), (1000, 10)])
def test_instance_clusters_recover_label_entropy(n, classes):
    # z = instance ids, balanced labels: I = H(T) = log2 C and H(Z|T) = log2 N - log2 C
    z = np.arange(n)
    t = np.arange(n) % classes
    assert entropy(t) == pytest.approx(math.log2(classes))
    assert mutual_information(z, t) == pytest.approx(math.log2(classes), abs=1e-12)
    assert conditional_entropy(z, t) == pytest.approx(math.log2(n) - math.log2(classes), abs=1e-12)


def test_product_table_gives_exactly_zero_information():
    # n(z, t) = a_z * b_t: Z and T independent, so I = 0 exactly and H(Z|T) = H(Z)
    a = [1, 2, 3, 5]
    b = [2, 7, 4]
    z, t = [], []
    for zi, az in enumerate(a):
        for ti, bt in enumerate(b):
            z += [zi] * (az * bt)
            t += [ti] * (az * bt)
    z, t = np.array(z), np.array(t)
    assert mutual_information(z, t) == 0.0
    assert mutual_information(t, z) == 0.0
    assert conditional_entropy(z, t) == pytest.approx(entropy(z), abs=1e-12)
    # H(Z) of the marginal a / 11
    assert entropy(z) == pytest.approx(_h(*(x / 11 for x in a)))


def test_base_e_equals_base_2_times_ln2():
    rng = np.random.default_rng(7)
    z, t = rng.integers(0, 9, 500), rng.integers(0, 4, 500)
    ln2 = math.log(2)
    assert entropy(z, base=math.e) == pytest.approx(entropy(z) * ln2)
    assert mutual_information(z, t, base=math.e) == pytest.approx(mutual_information(z, t) * ln2)
    assert conditional_entropy(z, t, base=math.e) == pytest.approx(
        conditional_entropy(z, t) * ln2
    )
    # base 4 halves bits
    assert entropy(z, base=4) == pytest.approx(entropy(z) / 2)


def test_contingency_matches_dense_counts():
    rng = np.random.default_rng(3)
    z, t = rng.integers(100, 110, 400), rng.integers(-2, 3, 400)
    table = contingency(z, t).toarray()
    zs, ts = np.unique(z), np.unique(t)
    for i, zv in enumerate(zs):
        for j, tv in enumerate(ts):
            assert table[i, j] == np.sum((z == zv) & (t == tv))
    assert table.sum() == 400


def test_large_sparse_case_runs():
    # 50,000 samples in 10,000 clusters: must not build a dense table (no timing asserted)
    rng = np.random.default_rng(0)
    z = rng.integers(0, 10_000, 50_000)
    t = z % 200  # labels are a function of the cluster: H(T|Z) = 0, so I = H(T)
    assert contingency(z, t).shape == (np.unique(z).size, 200)
    i_zt = mutual_information(z, t)
    assert i_zt == pytest.approx(entropy(t), abs=1e-9)
    assert i_zt == pytest.approx(entropy(z) - conditional_entropy(z, t), abs=1e-9)


# --- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "z, t, match",
    [
        (np.array([0, 1]), np.array([0, 1, 2]), "same length"),
        (np.array([], dtype=np.int64), np.array([], dtype=np.int64), "empty"),
        (np.array([0.0, 1.0]), np.array([0, 1]), "integers"),
        (np.array([0, 1]), np.array([True, False]), "integers"),
        (np.zeros((2, 2), dtype=np.int64), np.zeros(4, dtype=np.int64), "1-D"),
    ],
)
def test_bad_input_raises(z, t, match):
    for fn in (mutual_information, conditional_entropy, contingency):
        with pytest.raises(ValueError, match=match):
            fn(z, t)


@pytest.mark.parametrize("base", [0, -2, 1, 1.0, float("nan"), "2"])
def test_bad_base_raises(base):
    z = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="base"):
        entropy(z, base=base)
    with pytest.raises(ValueError, match="base"):
        mutual_information(z, z, base=base)
