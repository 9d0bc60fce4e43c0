"""The accelerator branch of the training step's checks (``utils.devices.host_reads_free``
false: range checks on the device, all connected-components rounds) computes what the CPU
branch computes, and its device-side checks still fail on bad ids."""
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin.clusters.components import components_scipy, components_torch
from clinfonce_plugin.losses import cl_infonce
from clinfonce_plugin.utils import devices


@pytest.fixture
def accelerator_path(monkeypatch):
    monkeypatch.setattr(devices, "host_reads_free", lambda tensor: False)


def test_host_reads_free_is_the_cpu():
    assert devices.host_reads_free(torch.zeros(1))
    assert not devices.host_reads_free(torch.zeros(1, device="meta"))


def reference_out(z, ids, tau):
    """SupCon L_out by a loop over anchors."""
    zn = F.normalize(z.double(), dim=1)
    s = zn @ zn.T / tau
    terms = []
    for a in range(len(ids)):
        others = [j for j in range(len(ids)) if j != a]
        pos = [j for j in others if ids[j] == ids[a]]
        if pos:
            terms.append(torch.logsumexp(s[a, others], 0) - s[a, pos].mean())
    return torch.stack(terms).mean()


def test_cl_infonce_same_value_on_the_accelerator_path(accelerator_path):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 1, 2, 0, 1, 3, 0, 1, 2, 0, 1, 3])
    expected = reference_out(z, ids, 0.5)
    assert torch.allclose(cl_infonce(z, ids, 0.5, num_clusters=4), expected)
    assert torch.allclose(cl_infonce(z, ids, 0.5, num_clusters=4, gathered=(z, ids)), expected)


def test_device_side_range_check_fails_on_bad_ids(accelerator_path):
    z = torch.randn(4, 3)
    with pytest.raises(RuntimeError):
        cl_infonce(z, torch.tensor([0, 1, 0, 5]), 0.5, num_clusters=2)


def test_components_all_rounds_equal_scipy(accelerator_path):
    g = torch.Generator().manual_seed(1)
    for n in (1, 2, 9, 300):
        nn = torch.randint(0, n, (n,), generator=g)
        assert torch.equal(components_torch(nn), components_scipy(nn))
