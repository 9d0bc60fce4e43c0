"""The clinfonce training step under 2 CPU processes (gloo): with the batch split over the
ranks, the loss and the (DDP-averaged) gradients equal the single-process step on the whole
batch. BatchNorm runs in eval mode so that per-rank batch statistics do not differ."""
import numpy as np
import pytest
import torch
import torch.distributed as dist

from tests.ddp import run_ranks

WORLD = 2


def _model(provider):
    from clinfonce_plugin import host
    from clinfonce_plugin.clusters.sample_info import SampleInfo
    from tests.conftest import make_cfg

    n = 16
    info = SampleInfo(num_samples=n, labels=np.arange(n) % 3,
                      attributes=(np.arange(n)[:, None] >> np.arange(3)) & 1,
                      attribute_names=["a", "b", "c"])
    torch.manual_seed(0)
    cfg = make_cfg("clinfonce", clusters=provider, instance_head=True)
    model = host.METHODS["clinfonce"](cfg, sample_info=info).eval()
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def _batch():
    g = torch.Generator().manual_seed(3)
    idx = torch.tensor([0, 5, 2, 7, 9, 12, 4, 15])
    crops = [torch.randn(8, 3, 32, 32, generator=g) for _ in range(2)]
    return idx, crops, idx % 3


def _step(model, batch):
    model.zero_grad()
    out = model.training_step(batch, 0)
    loss = out["loss"] if isinstance(out, dict) else out
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _worker(rank, provider):
    model = _model(provider)
    idx, crops, targets = _batch()
    part = slice(rank * 4, rank * 4 + 4)
    loss, grads = _step(model, (idx[part], [c[part] for c in crops], targets[part]))
    for g in grads.values():  # what DDP does to parameter gradients
        dist.all_reduce(g)
        g /= WORLD
    loss_mean = loss.clone()
    dist.all_reduce(loss_mean)
    return {"loss": loss_mean / WORLD, "grads": grads}


@pytest.mark.parametrize("provider", [{"provider": "labels"}, {"provider": "attributes", "k": 2}],
                         ids=["labels", "attributes"])
def test_two_process_step_equals_single_process_step(provider):
    results = run_ranks(_worker, provider, world_size=WORLD)
    loss, grads = _step(_model(provider), _batch())
    for rank, got in enumerate(results):
        assert got["loss"].item() == pytest.approx(loss.item(), abs=1e-5)
        assert set(got["grads"]) == set(grads)
        for name, g in grads.items():
            torch.testing.assert_close(got["grads"][name], g, atol=1e-5, rtol=1e-4,
                                       msg=f"gradient of {name} differs on rank {rank}")
