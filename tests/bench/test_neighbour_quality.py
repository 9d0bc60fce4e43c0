"""bench/neighbour_quality.py on hand-built features whose neighbours are known."""
import pytest
import torch

from tests.helpers import load_bench


def two_tight_pairs():
    # rows 0/1 nearly equal, rows 2/3 nearly equal, the pairs orthogonal
    return torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])


def test_pairs_that_share_the_class_are_fully_precise():
    nq = load_bench("neighbour_quality")
    feats, targets = two_tight_pairs(), torch.tensor([0, 0, 1, 1])
    assert nq.loo_1nn_accuracy(feats, targets) == 1.0
    res = nq.batch_graph_precision(feats, targets, batch=4, reps=3)
    assert res == {"edge_precision": 1.0, "pair_precision": 1.0, "mean_component": 2.0}
    assert nq.chance_pair_precision(targets) == pytest.approx(0.5)


def test_pairs_across_classes_have_zero_precision():
    nq = load_bench("neighbour_quality")
    feats, targets = two_tight_pairs(), torch.tensor([0, 1, 0, 1])
    assert nq.loo_1nn_accuracy(feats, targets) == 0.0
    res = nq.batch_graph_precision(feats, targets, batch=4, reps=2)
    assert res["edge_precision"] == 0.0 and res["pair_precision"] == 0.0


def test_one_mixed_component_counts_its_pairs():
    nq = load_bench("neighbour_quality")
    # a chain 0 -> 1 <- 2 (row 1 between 0 and 2) and a far singleton-free pair 3 <-> 4
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.25], [-1.0, 0.0], [-1.0, 0.05]])
    targets = torch.tensor([0, 0, 1, 2, 2])
    res = nq.batch_graph_precision(feats, targets, batch=5, reps=1)
    # component {0, 1, 2}: pairs (0,1) same, (0,2) (1,2) differ; component {3, 4}: same
    # ordered same-component pairs: 3*2 + 2*1 = 8, of which 2 + 2 share the class
    assert res["pair_precision"] == pytest.approx(4 / 8)
    assert res["mean_component"] == pytest.approx(5 / 2)
