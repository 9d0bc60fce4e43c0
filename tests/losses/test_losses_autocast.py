"""Every loss promotes its input to at least float32 and keeps that precision under
autocast (Lightning's 16-mixed / bf16-mixed), where matrix products would otherwise run in
16 bits: the loss under bf16 autocast equals the float32 loss of the same rows."""
import pytest
import torch

from clinfonce_plugin.losses import cl_infonce, cross_view_infonce, proto_nce

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]


def cases(device):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 16, generator=g)
    ids = torch.randint(0, 8, (64,), generator=g)
    protos = torch.randn(8, 16, generator=g)
    phi = torch.rand(8, generator=g) * 0.1 + 0.05
    z, ids, protos, phi = (t.to(device) for t in (z, ids, protos, phi))
    return {
        "cl_infonce": lambda: cl_infonce(z, ids, 0.1),
        "cross_view_infonce": lambda: cross_view_infonce(z[:32], z[32:], 0.1),
        "proto_nce": lambda: proto_nce(z, ids, protos, phi),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["cl_infonce", "cross_view_infonce", "proto_nce"])
def test_float32_loss_under_bf16_autocast(device, name):
    loss = cases(device)[name]
    expected = loss()
    with torch.autocast(device, dtype=torch.bfloat16):
        got = loss()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)
