"""NMI and clustering accuracy against hand-computed tables, the entropy formula of NMI
evaluated from counts, and a brute-force search over all cluster -> label matchings."""
import itertools
import math
from collections import Counter

import numpy as np
import pytest

from clinfonce_plugin.metrics.clustering import clustering_accuracy, normalized_mutual_information


def _h(*probs):
    return -sum(p * math.log2(p) for p in probs if p > 0)


def _counts(labels):
    """Expands {(cluster, label): count} into the two label arrays."""
    z, t = [], []
    for (a, b), c in labels.items():
        z += [a] * c
        t += [b] * c
    return np.array(z), np.array(t)


# --- NMI ------------------------------------------------------------------------------

def test_nmi_hand_computed_table():
    #        t=0  t=1
    # z=0     2    1
    # z=1     0    1
    # H(Z) = H(3/4, 1/4), H(T) = 1, H(Z,T) = H(1/2, 1/4, 1/4) = 1.5
    z, t = _counts({(0, 0): 2, (0, 1): 1, (1, 1): 1})
    hz, ht, hzt = _h(0.75, 0.25), 1.0, 1.5
    expected = (hz + ht - hzt) / ((hz + ht) / 2)
    assert expected == pytest.approx(0.34371, abs=1e-5)
    assert normalized_mutual_information(z, t) == pytest.approx(expected, abs=1e-12)


def test_nmi_closed_forms():
    t = np.array([0, 0, 1, 1, 2, 2])
    assert normalized_mutual_information(t, t) == pytest.approx(1.0)
    # renaming clusters changes nothing
    assert normalized_mutual_information(np.array([7, 7, -1, -1, 3, 3]), t) == pytest.approx(1.0)
    # independent: every cluster holds each label equally often
    z = np.array([0, 1, 0, 1, 0, 1])
    assert normalized_mutual_information(z, t) == 0.0
    # one cluster: no information about the labels
    assert normalized_mutual_information(np.zeros(6, dtype=int), t) == 0.0
    # both constant: the same partition
    assert normalized_mutual_information(np.zeros(4, dtype=int), np.ones(4, dtype=int)) == 1.0


def _nmi_from_counts(z, t):
    """NMI = 2 (H(Z) + H(T) - H(Z,T)) / (H(Z) + H(T)) in nats, from Counters."""
    n = len(z)

    def h(counter):
        return -sum(c / n * math.log(c / n) for c in counter.values())

    hz, ht, hzt = h(Counter(z.tolist())), h(Counter(t.tolist())), h(Counter(zip(z.tolist(),
                                                                               t.tolist())))
    return 2 * (hz + ht - hzt) / (hz + ht)


@pytest.mark.parametrize("n,k,c,seed", [(20, 3, 4, 0), (200, 10, 5, 1), (57, 7, 7, 2),
                                        (500, 40, 3, 3)])
def test_nmi_matches_the_entropy_formula(n, k, c, seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    # clusters partly follow the labels, so the NMI is neither 0 nor 1
    z = np.where(rng.random(n) < 0.6, t, rng.integers(0, k, n))
    assert normalized_mutual_information(z, t) == pytest.approx(_nmi_from_counts(z, t), abs=1e-12)


def test_nmi_is_symmetric():
    rng = np.random.default_rng(4)
    z, t = rng.integers(0, 5, 100), rng.integers(0, 3, 100)
    assert normalized_mutual_information(z, t) == pytest.approx(
        normalized_mutual_information(t, z), abs=1e-12)


# --- ACC ------------------------------------------------------------------------------

def test_acc_of_permuted_labels_is_100():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 6, 300)
    perm = rng.permutation(6)
    z = perm[t] + 100  # other values, other order
    assert clustering_accuracy(z, t) == 100.0


def test_acc_hand_computed_matching_beats_greedy_and_majority():
    #        t=0  t=1
    # z=0     6    5
    # z=1     5    0
    # greedy (largest cell first) takes z0->t0 and is left with z1->t1: 6 of 16;
    # majority vote maps both clusters to t0 (11 of 16) but is not one-to-one;
    # the best matching is z0->t1, z1->t0: 10 of 16 = 62.5 %
    z, t = _counts({(0, 0): 6, (0, 1): 5, (1, 0): 5})
    assert clustering_accuracy(z, t) == 62.5


def test_acc_hand_computed_more_clusters_than_labels():
    #        t=0  t=1
    # z=0     6    5
    # z=1     5    0
    # z=2     0    3
    # matchings: z0->t1 + z1->t0 = 10, z0->t0 + z2->t1 = 9, z1->t0 + z2->t1 = 8; the third
    # cluster's images are wrong in the best one: 10 of 19
    z, t = _counts({(0, 0): 6, (0, 1): 5, (1, 0): 5, (2, 1): 3})
    assert clustering_accuracy(z, t) == pytest.approx(100.0 * 10 / 19)


def _acc_brute_force(z, t):
    """Best one-to-one matching by trying every injection of the smaller side."""
    zs, ts = sorted(set(z.tolist())), sorted(set(t.tolist()))
    pairs = Counter(zip(z.tolist(), t.tolist()))
    best = 0
    if len(zs) <= len(ts):
        for chosen in itertools.permutations(ts, len(zs)):
            best = max(best, sum(pairs[(a, b)] for a, b in zip(zs, chosen)))
    else:
        for chosen in itertools.permutations(zs, len(ts)):
            best = max(best, sum(pairs[(a, b)] for a, b in zip(chosen, ts)))
    return 100.0 * best / len(z)


@pytest.mark.parametrize("n,k,c,seed", [(30, 4, 4, 0), (50, 5, 3, 1), (40, 3, 6, 2),
                                        (80, 6, 6, 3)])
def test_acc_matches_brute_force(n, k, c, seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    z = np.where(rng.random(n) < 0.5, t % k, rng.integers(0, k, n))
    assert clustering_accuracy(z, t) == pytest.approx(_acc_brute_force(z, t), abs=1e-12)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="same length"):
        clustering_accuracy(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="integers"):
        normalized_mutual_information(np.array([0.5, 1.0]), np.array([0, 1]))
