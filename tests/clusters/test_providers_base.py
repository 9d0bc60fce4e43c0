"""ClusterProvider base: parameter validation, ids contract, the ids buffer and its lookup,
stats, contiguous."""
import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.base import REQUIRED, ClusterProvider, contiguous
from clinfonce_plugin.clusters.sample_info import SampleInfo


class FixedProvider(ClusterProvider):
    """Test double: returns the ids passed in parameter ``ids``."""

    name = "fixed"
    PARAMS = {"ids": REQUIRED, "scale": 2}

    def _build(self):
        return np.asarray(self.params["ids"])


def make(ids, **extra):
    return FixedProvider(SampleInfo(num_samples=len(ids)), ids=ids, **extra)


def test_contiguous_remaps_in_sorted_order_of_values():
    assert contiguous([5, -2, 5, 9, -2]).tolist() == [1, 0, 1, 2, 0]
    assert contiguous(np.array(["b", "a", "c", "a"])).tolist() == [1, 0, 2, 0]
    assert contiguous(np.array([7, 7, 7])).tolist() == [0, 0, 0]
    assert contiguous([]).tolist() == []
    assert contiguous([3, 1]).dtype == np.int64


def test_contiguous_rejects_two_dimensional_input():
    with pytest.raises(ValueError, match=r"one-dimensional, got shape \(2, 2\)"):
        contiguous(np.zeros((2, 2), dtype=int))


def test_defaults_are_filled_and_user_values_kept():
    p = make([0, 1])
    assert p.params == {"ids": [0, 1], "scale": 2}
    assert make([0, 1], scale=5).params["scale"] == 5


def test_unknown_parameter_lists_valid_keys():
    with pytest.raises(ValueError, match=r"fixed: unknown parameter\(s\) \['bogus'\]\. "
                                         r"Valid parameters: \['ids', 'scale'\]"):
        make([0], bogus=1)


def test_missing_required_parameter():
    with pytest.raises(ValueError, match=r"fixed: missing required parameter\(s\) \['ids'\]"):
        FixedProvider(SampleInfo(num_samples=2))


def test_info_must_be_sample_info():
    with pytest.raises(ValueError, match="expected a SampleInfo, got dict"):
        FixedProvider({"num_samples": 2}, ids=[0, 1])


@pytest.mark.parametrize("ids, match", [
    ([0, 2], "not contiguous"),
    ([1, 1], "not contiguous"),
    ([0.0, 1.0], "expected integers"),
])
def test_built_ids_must_be_contiguous_integers(ids, match):
    with pytest.raises(ValueError, match=match):
        make(ids)


def test_built_ids_must_have_one_entry_per_sample():
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3,\)"):
        FixedProvider(SampleInfo(num_samples=3), ids=[0, 1])


def test_ids_are_an_int64_buffer_in_the_state_dict_and_move_with_the_module():
    p = make([1, 0, 1])
    assert p.ids.dtype == torch.int64 and p.ids.tolist() == [1, 0, 1]
    assert p.num_clusters == 2
    assert dict(p.named_buffers()) == {"ids": p.ids}
    assert list(p.state_dict()) == ["ids"] and list(p.parameters()) == []
    p.to(torch.float64)  # a dtype cast of the model leaves integer ids alone
    assert p.ids.dtype == torch.int64
    holder = torch.nn.Module()
    holder.provider = p
    assert list(holder.state_dict()) == ["provider.ids"]


def test_a_fresh_provider_loads_the_ids_of_a_state_dict():
    other = make([0, 0, 1])
    other.load_state_dict(make([2, 0, 1]).state_dict())
    assert other.ids.tolist() == [2, 0, 1] and other.num_clusters == 3  # K follows the ids
    idx = torch.tensor([0, 2])
    assert other(idx).tolist() == [2, 1]
    # loaded as a submodule (the method's checkpoint), K follows too
    holder = torch.nn.Module()
    holder.provider = make([0, 0, 0])
    holder.load_state_dict({"provider.ids": torch.tensor([0, 1, 1])})
    assert holder.provider.num_clusters == 2


def test_stats_on_a_known_partition():
    # sizes per cluster: 0 -> 3, 1 -> 1, 2 -> 2, 3 -> 1
    p = make([0, 0, 0, 1, 2, 2, 3])
    s = p.stats()
    assert s["num_samples"] == 7
    assert s["num_clusters"] == 4
    assert s["size_histogram"] == {1: 2, 2: 1, 3: 1}
    assert list(s["size_histogram"]) == [1, 2, 3]
    assert s["min_size"] == 1 and s["max_size"] == 3
    assert s["mean_size"] == pytest.approx(7 / 4)
    assert s["singletons"] == 2
    line = p.describe()
    assert "\n" not in line
    assert line.startswith("fixed: 4 clusters over 7 samples")
    assert "1/1.8/3" in line and "2 singletons" in line


def test_lookup_returns_ids_of_indexes_with_their_shape():
    ids = [2, 0, 1, 1, 0, 3]
    p = make(ids)
    idx = torch.tensor([[5, 0], [3, 3]])
    out = p(idx)
    assert out.dtype == torch.int64
    assert out.device == idx.device
    assert out.tolist() == [[3, 2], [1, 1]]
    assert p(torch.tensor([4, 1], dtype=torch.int32)).tolist() == [0, 0]
    assert p(torch.zeros(0, dtype=torch.long)).tolist() == []


def test_lookup_follows_new_ids_after_set_ids():
    p = make([0, 1, 1])
    idx = torch.tensor([0, 1, 2])
    assert p(idx).tolist() == [0, 1, 1]
    p._set_ids(np.array([1, 1, 0]))  # what a dynamic provider does between epochs
    assert p(idx).tolist() == [1, 1, 0]


@pytest.mark.parametrize("bad, match", [
    ([0, 1], "fixed: expects a torch.Tensor of indexes, got list"),
    (torch.tensor([0.0]), "expects integer indexes, got torch.float32"),
    (torch.tensor([True]), "expects integer indexes, got torch.bool"),
    (torch.tensor([0, 3]), "index 3 out of range for 3 samples"),
    (torch.tensor([-1, 0]), "index -1 out of range for 3 samples"),
])
def test_lookup_rejects_bad_indexes(bad, match):
    with pytest.raises(ValueError, match=match):
        make([0, 1, 1])(bad)


def test_a_single_cluster_is_announced_with_a_warning(capsys):
    from clinfonce_plugin.clusters.labels import LabelsProvider

    LabelsProvider(SampleInfo(num_samples=4, labels=np.zeros(4, dtype=np.int64)))
    assert "warning: cluster provider 'labels' put all 4 images in one cluster" in \
        capsys.readouterr().err
    LabelsProvider(SampleInfo(num_samples=4, labels=np.arange(4)))
    assert capsys.readouterr().err == ""
