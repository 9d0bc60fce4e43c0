"""cmc_attributes under 2 CPU processes (gloo): cross_view_infonce on each rank's rows equals
the single-process loss of the gathered batch (mean over ranks; DDP-averaged gradients), and
the method's step with the batch split over the ranks equals the single-process step.
BatchNorm runs in eval mode so that per-rank batch statistics do not differ."""
import numpy as np
import pytest
import torch
import torch.distributed as dist

from clinfonce_plugin.losses import cross_view_infonce
from tests.ddp import run_ranks

WORLD = 2
LOCAL = 4
TAU = 0.3


def _model():
    from clinfonce_plugin import host
    from clinfonce_plugin.clusters.sample_info import SampleInfo
    from tests.conftest import make_cfg

    n = 16
    info = SampleInfo(num_samples=n, labels=np.arange(n) % 3,
                      attributes=(np.arange(n)[:, None] >> np.arange(4)) & 1)
    torch.manual_seed(0)
    model = host.METHODS["cmc_attributes"](make_cfg("cmc_attributes", attr_hidden_dim=8),
                                           sample_info=info).eval()
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def _batch():
    g = torch.Generator().manual_seed(3)
    idx = torch.tensor([0, 5, 2, 7, 9, 12, 4, 15])
    crops = [torch.randn(2 * LOCAL, 3, 32, 32, generator=g) for _ in range(2)]
    return idx, crops, idx % 3


def _views():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(WORLD * LOCAL, 5, generator=g, dtype=torch.float64),
            torch.randn(WORLD * LOCAL, 5, generator=g, dtype=torch.float64))


def _step(model, batch):
    model.zero_grad()
    loss = model.training_step(batch, 0)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.grad is not None}


def _mean_over_ranks(t):
    t = t.clone()
    dist.all_reduce(t)
    return t / WORLD


def _worker(rank):
    part = slice(rank * LOCAL, (rank + 1) * LOCAL)
    a, b = (v[part].clone().requires_grad_() for v in _views())
    loss = cross_view_infonce(a, b, TAU)
    loss.backward()
    out = {"loss": loss.detach(), "grad_a": a.grad, "grad_b": b.grad,
           "local": cross_view_infonce(a.detach(), b.detach(), TAU, gather=False)}
    idx, crops, targets = _batch()
    step_loss, grads = _step(_model(), (idx[part], [c[part] for c in crops], targets[part]))
    out["step_loss"] = _mean_over_ranks(step_loss)
    out["step_grads"] = {n: _mean_over_ranks(g) for n, g in grads.items()}  # as DDP does
    return out


@pytest.fixture(scope="module")
def ranks():
    return run_ranks(_worker, world_size=WORLD)


def test_loss_equals_the_single_process_loss_of_the_gathered_batch(ranks):
    a, b = (v.clone().requires_grad_() for v in _views())
    full = cross_view_infonce(a, b, TAU)
    grad_a, grad_b = torch.autograd.grad(full, (a, b))
    mean = sum(r["loss"] for r in ranks) / WORLD
    assert mean.item() == pytest.approx(full.item(), abs=1e-12)
    for rank, got in enumerate(ranks):
        part = slice(rank * LOCAL, (rank + 1) * LOCAL)
        # DDP averages gradients over ranks: each rank's own rows carry the full gradient
        torch.testing.assert_close(got["grad_a"] / WORLD, grad_a[part], atol=1e-12, rtol=0)
        torch.testing.assert_close(got["grad_b"] / WORLD, grad_b[part], atol=1e-12, rtol=0)
        # gather=False: the rank's rows alone
        local = cross_view_infonce(a.detach()[part], b.detach()[part], TAU)
        assert got["local"].item() == pytest.approx(local.item(), abs=1e-12)
        assert abs(got["loss"].item() - got["local"].item()) > 1e-3  # the gather mattered


def test_method_step_equals_the_single_process_step(ranks):
    loss, grads = _step(_model(), _batch())
    for rank, got in enumerate(ranks):
        assert got["step_loss"].item() == pytest.approx(loss.item(), abs=1e-5)
        assert set(got["step_grads"]) == set(grads)
        for name, g in grads.items():
            torch.testing.assert_close(got["step_grads"][name], g, atol=1e-5, rtol=1e-4,
                                       msg=f"gradient of {name} differs on rank {rank}")
