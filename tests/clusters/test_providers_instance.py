"""instance provider: one cluster per image (SimCLR)."""
import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.instance import InstanceProvider
from clinfonce_plugin.clusters.sample_info import SampleInfo


@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_instance_ids_give_n_singleton_clusters(n):
    p = InstanceProvider(SampleInfo(num_samples=n))
    assert p.ids.tolist() == list(range(n))
    assert p.num_clusters == n
    s = p.stats()
    assert s["size_histogram"] == {1: n}
    assert s["singletons"] == n


def test_instance_lookup_is_identity_on_indexes():
    p = InstanceProvider(SampleInfo(num_samples=50))
    idx = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:16]
    assert torch.equal(p(idx), idx)


def test_instance_takes_no_parameters():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['k'\].*takes no parameters"):
        InstanceProvider(SampleInfo(num_samples=3), k=2)


def test_instance_ignores_side_information():
    info = SampleInfo(num_samples=3, labels=np.array([0, 0, 0]))
    assert InstanceProvider(info).num_clusters == 3
