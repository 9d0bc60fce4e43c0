"""Under autocast (Lightning's 16-mixed / bf16-mixed) the neighbour searches compute their
similarities in the rows' dtype: bf16 products change about 1 % of a batch's 1-NNs, and so
WCL's weak labels and the K-NN table."""
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin.clusters.components import nearest_neighbour, weak_labels_of_views
from clinfonce_plugin.clusters.neighbours import knn_table

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]


def rows(device, seed=0, n=256, d=128):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1).to(device)


def reference_1nn(v):
    """The 1-NN by float64 similarities, self excluded."""
    sim = v.double() @ v.double().T
    sim.fill_diagonal_(float("-inf"))
    return sim.argmax(dim=1)


@pytest.mark.parametrize("device", DEVICES)
def test_weak_labels_under_bf16_autocast_are_the_float32_ones(device):
    v = [rows(device, seed) for seed in (0, 1)]
    expected = weak_labels_of_views(v)
    with torch.autocast(device, dtype=torch.bfloat16):
        nn = nearest_neighbour(v[0], v[0])
        got = weak_labels_of_views(v)
    assert torch.equal(nn.cpu(), reference_1nn(v[0].cpu()))
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_the_torch_knn_table_under_bf16_autocast_is_the_float32_one(device):
    x = rows(device, seed=2, n=200, d=64)
    expected = knn_table(x, 5, backend="torch")
    with torch.autocast(device, dtype=torch.bfloat16):
        got = knn_table(x, 5, backend="torch")
    assert torch.equal(got, expected)
    sim = x.double().cpu() @ x.double().cpu().T
    sim.fill_diagonal_(float("-inf"))
    assert torch.equal(got[:, 0].cpu(), sim.argmax(dim=1))
