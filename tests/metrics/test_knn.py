"""The weighted kNN classifier against a brute-force reference written here with Python loops,
hand-computed cases (including ties), the kNN config checks, and the clustering rows of
main_knn on separable features."""
import math

import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin.config import ConfigError, check_knn_cfg
from clinfonce_plugin.evaluate.knn import clustering_rows, effective_ks
from clinfonce_plugin.metrics.knn import weighted_knn_accuracy


def brute_force(train_x, train_y, test_x, test_y, ks, distance, temperature, num_classes):
    """{k: (top1, top5)} in percent, one test sample at a time, from lists of floats."""
    train = [list(map(float, r)) for r in train_x.tolist()]
    test = [list(map(float, r)) for r in test_x.tolist()]
    ty, sy = [int(v) for v in train_y.tolist()], [int(v) for v in test_y.tolist()]

    def unit(v):
        norm = math.sqrt(sum(c * c for c in v))
        return [c / norm for c in v]

    out = {}
    for k in ks:
        hit1 = hit5 = 0
        for q, label in zip(test, sy):
            cands = []  # (sort key, weight, class): nearest first, then lower training index
            for i, (p, c) in enumerate(zip(train, ty)):
                if distance == "cosine":
                    s = sum(a * b for a, b in zip(unit(q), unit(p)))
                    cands.append(((-s, i), math.exp(s / temperature), c))
                else:
                    d = math.sqrt(sum((a - b) ** 2 for a, b in zip(q, p)))
                    cands.append(((d, i), 1.0 / (d + 1e-5), c))
            cands.sort(key=lambda t: t[0])
            scores = {}
            for _, w, c in cands[:k]:
                scores[c] = scores.get(c, 0.0) + w
            ranked = sorted(scores, key=lambda c: (-scores[c], c))  # voted classes only
            hit1 += ranked[0] == label
            hit5 += label in ranked[:min(5, num_classes)]
        out[k] = (100.0 * hit1 / len(test), 100.0 * hit5 / len(test))
    return out


def _assert_close(got, want):
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("chunk_elements", [10 ** 6, 50, 1])
def test_matches_brute_force_on_random_features(distance, chunk_elements):
    g = torch.Generator().manual_seed(3)
    train_x, test_x = torch.randn(23, 4, generator=g), torch.randn(11, 4, generator=g)
    train_y = torch.randint(0, 7, (23,), generator=g)
    test_y = torch.randint(0, 7, (11,), generator=g)
    ks = [1, 3, 5, 8, 23]
    got = weighted_knn_accuracy(train_x, train_y, test_x, test_y, ks, distance, 0.1, 7,
                                chunk_elements)
    _assert_close(got, brute_force(train_x, train_y, test_x, test_y, ks, distance, 0.1, 7))
    # the reference is not trivially satisfied: accuracies vary with k on this case
    assert len({v for v in got.values()}) > 1


def test_matches_brute_force_with_many_exact_ties():
    # integer points: many equal distances; both sides apply the documented tie rules
    g = torch.Generator().manual_seed(0)
    train_x = torch.randint(0, 2, (20, 3), generator=g).float()
    test_x = torch.randint(0, 2, (9, 3), generator=g).float()
    train_y = torch.randint(0, 4, (20,), generator=g)
    test_y = torch.randint(0, 4, (9,), generator=g)
    ks = [1, 2, 4, 7, 20]
    got = weighted_knn_accuracy(train_x, train_y, test_x, test_y, ks, "euclidean", 0.07, 4, 40)
    _assert_close(got, brute_force(train_x, train_y, test_x, test_y, ks, "euclidean", 0.07, 4))


def test_hand_computed_euclidean():
    # 1-D train points 0 (class 0), 1 and 1.5 (class 1), 4 (class 2).
    # test 0.4 (label 0): distances 0.4, 0.6, 1.1, 3.6 -> k=1,2 predict 0 (2.5 > 1.67);
    #   k=3: class 1 has 1/0.6 + 1/1.1 = 2.58 > 2.5 -> 1 (wrong); k=4 still 1.
    # test 3.0 (label 2): distances 3, 2, 1.5, 1 -> k=1,2 predict 2 (1 > 0.67);
    #   k=3: class 1 has 1/1.5 + 1/2 = 1.17 > 1 -> 1 (wrong); k=4 still 1.
    # Every voted class is within the top 5 (3 classes), and the label is voted for each k.
    train_x, train_y = torch.tensor([[0.0], [1.0], [1.5], [4.0]]), torch.tensor([0, 1, 1, 2])
    test_x, test_y = torch.tensor([[0.4], [3.0]]), torch.tensor([0, 2])
    got = weighted_knn_accuracy(train_x, train_y, test_x, test_y, [1, 2, 3, 4], "euclidean",
                                0.07, 3, 100)
    assert got == {1: (100.0, 100.0), 2: (100.0, 100.0), 3: (0.0, 100.0), 4: (0.0, 100.0)}


def test_hand_computed_cosine_depends_on_the_temperature():
    # train (2,0) class 0, (0,1) and (0,3) class 1 (the same direction); test (1, 0.9),
    # label 1: cos = 0.7433 to class 0, 0.6690 to both class-1 points (norms do not matter).
    # k=3: class 0 weighs e^(0.7433/T), class 1 2 e^(0.6690/T): ratio e^(0.0743/T) is 2.89 > 2
    # at T=0.07 (predict 0) and 1.45 < 2 at T=0.2 (predict 1). k=1, 2: class 0 first.
    train_x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    train_y = torch.tensor([0, 1, 1])
    test_x, test_y = torch.tensor([[1.0, 0.9]]), torch.tensor([1])
    cold = weighted_knn_accuracy(train_x, train_y, test_x, test_y, [1, 2, 3], "cosine", 0.07,
                                 2, 100)
    warm = weighted_knn_accuracy(train_x, train_y, test_x, test_y, [1, 2, 3], "cosine", 0.2,
                                 2, 100)
    # k=1: only class 0 voted, so label 1 is not in the top 5 either
    assert cold == {1: (0.0, 0.0), 2: (0.0, 100.0), 3: (0.0, 100.0)}
    assert warm == {1: (0.0, 0.0), 2: (0.0, 100.0), 3: (100.0, 100.0)}


def test_ties_take_the_lower_training_index_and_the_lower_class():
    # test 0.5 is equally far from train 0 (class 0, index 0) and 1 (class 1, index 1):
    # k=1 takes index 0 -> class 0; k=2 gives both classes the same score -> class 0 first.
    train_x, train_y = torch.tensor([[0.0], [1.0]]), torch.tensor([0, 1])
    got = weighted_knn_accuracy(train_x, train_y, torch.tensor([[0.5]]), torch.tensor([1]),
                                [1, 2], "euclidean", 0.07, 2, 100)
    assert got == {1: (0.0, 0.0), 2: (0.0, 100.0)}
    # the same points in the other order: index 0 is now class 1 -> k=1 predicts 1; k=2 ties
    # between the classes still rank class 0 first
    got = weighted_knn_accuracy(train_x.flip(0), train_y.flip(0), torch.tensor([[0.5]]),
                                torch.tensor([1]), [1, 2], "euclidean", 0.07, 2, 100)
    assert got == {1: (100.0, 100.0), 2: (0.0, 100.0)}


def test_top5_counts_only_voted_classes_among_the_best_five():
    # 7 classes, one point each at distance c + 1 from the test point (class c); label 5:
    # k=5 votes classes 0-4 only (label not voted), k=6 ranks class 5 sixth (outside the top 5)
    train_x = torch.arange(1, 8, dtype=torch.float32)[:, None]
    train_y = torch.arange(7)
    for k, want in ((5, (0.0, 0.0)), (6, (0.0, 0.0)), (7, (0.0, 0.0))):
        got = weighted_knn_accuracy(train_x, train_y, torch.zeros(1, 1), torch.tensor([5]), [k],
                                    "euclidean", 0.07, 7, 100)
        assert got[k] == want
    got = weighted_knn_accuracy(train_x, train_y, torch.zeros(1, 1), torch.tensor([4]), [5],
                                "euclidean", 0.07, 7, 100)
    assert got[5] == (0.0, 100.0)


def test_refuses_unknown_labels_bad_k_and_distance():
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"-1 marks an unknown label"):
        weighted_knn_accuracy(x, torch.tensor([0, -1, 0, 1]), x, y, [1], "cosine", 0.07, 2, 100)
    with pytest.raises(ValueError, match=r"-1 marks an unknown label"):
        weighted_knn_accuracy(x, y, x, torch.tensor([0, -1, 0, 1]), [1], "cosine", 0.07, 2, 100)
    with pytest.raises(ValueError, match=r"k must lie in \[1, 4\].*\[5\]"):
        weighted_knn_accuracy(x, y, x, y, [1, 5], "cosine", 0.07, 2, 100)
    with pytest.raises(ValueError, match="unknown distance 'manhattan'"):
        weighted_knn_accuracy(x, y, x, y, [1], "manhattan", 0.07, 2, 100)


def test_effective_ks_clips_to_the_training_set_with_a_note():
    assert effective_ks([10, 20, 50], 100) == ([10, 20, 50], None)
    ks, note = effective_ks([10, 20, 50, 100, 200], 36)
    assert ks == [10, 20, 36]
    assert note == "k 50, 100, 200 > 36 training samples: evaluated as k=36"


def test_knn_config_defaults_and_checks():
    cfg = check_knn_cfg(OmegaConf.create({"pretrained": "x.ckpt"}))
    assert list(cfg.k) == [10, 20, 50, 100, 200] and cfg.temperature == 0.07
    assert list(cfg.distance_function) == ["cosine", "euclidean"]
    assert list(cfg.feature_type) == ["backbone", "projector"]
    assert cfg.clustering.enabled and cfg.clustering.k is None and cfg.clustering.split == "train"
    for bad, key in (({"k": [10, 0]}, "k"), ({"k": []}, "k"), ({"k": [5, 5]}, "k"),
                     ({"k": [2.5]}, "k"), ({"distance_function": ["cosine", "l1"]},
                                          "distance_function"),
                     ({"feature_type": ["backbone", "head"]}, "feature_type"),
                     ({"feature_type": []}, "feature_type"),
                     ({"clustering": {"split": "val"}}, "clustering.split"),
                     ({"clustering": {"k": 0}}, "clustering.k"),
                     ({"clustering": {"nredo": 0}}, "clustering.nredo"),
                     ({"temperature": 0.0}, "temperature"), ({"knn_k": 3}, "knn_k")):
        with pytest.raises(ConfigError, match=rf"{key}: "):
            check_knn_cfg(OmegaConf.create({"pretrained": "x.ckpt", **bad}))


def _blobs(n_per, seed):
    """Three tight clusters around orthogonal directions (spherical k-means separates them
    exactly), labelled 2, 0, 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(8)[:3] * 5
    x = torch.cat([c + 0.05 * torch.randn(n_per, 8, generator=g) for c in centres])
    y = torch.tensor([2, 0, 1]).repeat_interleave(n_per)
    return x, y


def test_clustering_rows_on_separable_features():
    (x_tr, y_tr), (x_te, y_te) = _blobs(10, 0), _blobs(4, 1)
    # several k-means runs: one run from an unlucky draw of initial points can merge two
    # blobs (seed 0 does on the 42 points of "all")
    ccfg = OmegaConf.create({"k": None, "split": "train", "seed": 0, "nredo": 10,
                             "iterations": 20})
    features = {"backbone": {"train": x_tr, "test": x_te}}
    labels = {"train": y_tr, "test": y_te}
    for split, n in (("train", 30), ("test", 12), ("all", 42)):
        ccfg.split = split
        (row,) = clustering_rows(features, labels, 3, ccfg)
        assert (row["feature"], row["split"], row["k"]) == ("backbone", split, 3)
        assert row["acc"] == 100.0 and row["nmi"] == pytest.approx(1.0)
    # more clusters than classes: the extra cluster's images count as wrong
    ccfg.split, ccfg.k = "train", 4
    (row,) = clustering_rows(features, labels, 3, ccfg)
    assert row["k"] == 4 and row["acc"] < 100.0
    ccfg.k = 31
    with pytest.raises(ConfigError, match=r"clustering.k: 31 clusters for the 30 images of the "
                                          r"train split"):
        clustering_rows(features, labels, 3, ccfg)
