"""The runtime's mocov2plus step under 2 CPU processes (gloo): with the batch split over the
ranks, the mean of the ranks' losses, the DDP-averaged gradients and the queues (gathered
keys, in rank order) equal the single-process step on the whole batch; training starts from
rank 0's queue on every rank. BatchNorm runs in eval mode so that per-rank batch statistics
do not differ."""
import pytest
import torch
import torch.distributed as dist

from tests.ddp import run_ranks

WORLD = 2
B = 8  # whole batch; 4 images per rank


def _method_class():
    from clinfonce_plugin.host.runtime.methods import MoCoV2Plus  # whichever host is resolved

    return MoCoV2Plus


def _cfg():
    from tests.conftest import make_cfg

    return make_cfg("mocov2plus", queue_size=12)


def _model():
    torch.manual_seed(0)
    model = _method_class()(_cfg()).eval()
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def _batch():
    g = torch.Generator().manual_seed(3)
    crops = [torch.randn(B, 3, 32, 32, generator=g) for _ in range(2)]
    return torch.arange(B), crops, torch.arange(B) % 5


def _step(model, batch):
    loss = model.training_step(batch, 0)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, model.queue.clone(), model.queue_ptr.clone()


def _worker(rank):
    from types import SimpleNamespace

    torch.manual_seed(100 + rank)  # another initial queue on each rank ...
    other = _method_class()(_cfg())
    other._trainer = SimpleNamespace(global_step=0)
    before = other.queue.clone()
    other.on_train_start()  # ... replaced by rank 0's
    model = _model()
    idx, crops, targets = _batch()
    part = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
    loss, grads, queue, ptr = _step(model, (idx[part], [c[part] for c in crops], targets[part]))
    for g in grads.values():  # what DDP does to parameter gradients
        dist.all_reduce(g)
        g /= WORLD
    dist.all_reduce(loss)
    return {"loss": loss / WORLD, "grads": grads, "queue": queue, "ptr": ptr,
            "start_before": before, "start_after": other.queue.clone()}


@pytest.fixture(scope="module")
def results():
    return run_ranks(_worker, world_size=WORLD)


def test_training_starts_with_rank_0s_queue_on_every_rank(results):
    assert not torch.equal(results[0]["start_before"], results[1]["start_before"])
    for got in results:
        assert torch.equal(got["start_after"], results[0]["start_before"])


def test_two_process_step_equals_single_process_step(results):
    model = _model()
    queue0 = model.queue.clone()
    loss, grads, queue, ptr = _step(model, _batch())
    assert ptr.item() == B
    assert not torch.allclose(queue[:, :, :B], queue0[:, :, :B])  # the step wrote keys
    for rank, got in enumerate(results):
        assert got["loss"].item() == pytest.approx(loss.item(), abs=1e-5)
        # every rank holds the whole batch's keys, rank 0's first: the same queue everywhere
        torch.testing.assert_close(got["queue"], queue, atol=1e-6, rtol=0)
        assert got["ptr"].item() == B
        assert set(got["grads"]) == set(grads)
        for name, g in grads.items():
            torch.testing.assert_close(got["grads"][name], g, atol=1e-5, rtol=1e-4,
                                       msg=f"gradient of {name} differs on rank {rank}")
