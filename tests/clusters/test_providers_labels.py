"""labels provider: downstream labels as clusters (SupCon), -1 -> singleton."""
import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.labels import LabelsProvider
from clinfonce_plugin.clusters.sample_info import SampleInfo


def test_labels_hand_case_with_unknowns():
    # known labels {0, 3, 7} -> 0, 1, 2 in sorted order; the two -1 get 3 and 4 in
    # dataset order.
    labels = np.array([3, 7, 3, -1, 7, -1, 0])
    p = LabelsProvider(SampleInfo(num_samples=7, labels=labels))
    assert p.ids.tolist() == [1, 2, 1, 3, 2, 4, 0]
    assert p.num_clusters == 5
    assert p.stats()["singletons"] == 3  # label 0 and the two unknown samples
    assert "2 samples with unknown label" in p.describe()


def test_labels_partition_matches_pairwise_reference():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 6, size=60)
    ids = LabelsProvider(SampleInfo(num_samples=60, labels=labels)).ids
    for i in range(60):
        for j in range(60):
            same_ref = i == j or (labels[i] == labels[j] and labels[i] >= 0)
            assert (ids[i] == ids[j]) == same_ref, (i, j)
    assert sorted(set(ids.tolist())) == list(range(ids.max() + 1))


def test_labels_lookup_on_torch_indexes():
    labels = np.array([4, 4, 9, 1])
    p = LabelsProvider(SampleInfo(num_samples=4, labels=labels))
    assert p(torch.tensor([2, 0, 3, 1])).tolist() == [2, 1, 0, 1]


def test_labels_missing():
    with pytest.raises(ValueError, match="needs SampleInfo.labels"):
        LabelsProvider(SampleInfo(num_samples=2))


def test_labels_below_minus_one():
    with pytest.raises(ValueError, match="label -2 at index 1"):
        LabelsProvider(SampleInfo(num_samples=2, labels=np.array([0, -2])))


def test_labels_must_be_integers():
    with pytest.raises(ValueError, match="must be \\(N,\\) integers"):
        LabelsProvider(SampleInfo(num_samples=2, labels=np.array([0.0, 1.0])))


def test_labels_unknown_parameter():
    with pytest.raises(ValueError, match=r"labels: unknown parameter\(s\) \['k'\]"):
        LabelsProvider(SampleInfo(num_samples=1, labels=np.array([0])), k=1)
