"""The runtime's SwAV: Sinkhorn-Knopp codes and the swapped-prediction loss against an
independent computation, the global normalisation across 2 processes, and the method step."""
import numpy as np
import pytest
import torch

from clinfonce_plugin.host.runtime.swav import sinkhorn_knopp, swav_loss
from tests.ddp import run_ranks


def _sinkhorn_reference(scores, eps, iters):
    """SwAV Algorithm 1 written with numpy in float64."""
    q = np.exp(scores.astype(np.float64) / eps).T  # K x B
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True) * k
        q /= q.sum(axis=0, keepdims=True) * b
    return (q * b).T


@pytest.mark.parametrize("b, k, eps, iters", [(8, 5, 0.05, 3), (16, 30, 0.1, 5), (6, 2, 0.5, 1)])
def test_sinkhorn_codes_match_the_reference(b, k, eps, iters):
    scores = torch.randn(b, k, generator=torch.Generator().manual_seed(b + k)).clamp(-1, 1)
    codes = sinkhorn_knopp(scores, eps, iters)
    ref = _sinkhorn_reference(scores.numpy(), eps, iters)
    np.testing.assert_allclose(codes.numpy(), ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(codes.sum(1), torch.ones(b))  # each sample: a distribution


def test_sinkhorn_equipartitions_with_enough_iterations():
    scores = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    codes = sinkhorn_knopp(scores, 0.5, 50)
    torch.testing.assert_close(codes.sum(0), torch.full((4,), 16.0), atol=1e-3, rtol=0)


def test_sinkhorn_rejects_bad_parameters():
    with pytest.raises(ValueError, match="Illegal Sinkhorn"):
        sinkhorn_knopp(torch.zeros(2, 2), epsilon=0.0)


def test_swav_loss_matches_a_loop_reference():
    g = torch.Generator().manual_seed(1)
    preds = [torch.randn(5, 7, generator=g) for _ in range(3)]  # 2 large + 1 small crop
    codes = [torch.softmax(torch.randn(5, 7, generator=g), 1) for _ in range(2)]
    t = 0.1
    terms = []
    for i in range(2):
        for v in range(3):
            if v == i:
                continue
            for n in range(5):
                logp = preds[v][n] / t - torch.logsumexp(preds[v][n] / t, 0)
                terms.append(-(codes[i][n] * logp).sum() / 5)
    # 4 (i, v) pairs, each the mean over 5 samples
    expected = torch.stack([sum(terms[j * 5:(j + 1) * 5]) for j in range(4)]).mean()
    assert swav_loss(preds, codes, t).item() == pytest.approx(expected.item(), rel=1e-6)


def _worker(rank, scores):
    return sinkhorn_knopp(scores[rank * 6:(rank + 1) * 6], 0.05, 3)


def test_sinkhorn_normalises_over_the_global_batch_across_ranks():
    scores = torch.randn(12, 5, generator=torch.Generator().manual_seed(2)).clamp(-1, 1)
    scores[6:] += 0.5  # rank 1's scores are higher: a per-rank shift would be visible
    got = torch.cat(run_ranks(_worker, scores, world_size=2))
    torch.testing.assert_close(got, sinkhorn_knopp(scores, 0.05, 3), rtol=1e-4, atol=1e-6)


def test_swav_method_step_trains_projector_and_freezes_prototypes_first(cfg_factory):
    from clinfonce_plugin.host.runtime.methods import SwAV

    cfg = cfg_factory("swav", num_prototypes=10)
    del cfg.method_kwargs["temperature"]
    model = SwAV(cfg)
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    batch = (torch.arange(6), [torch.randn(6, 3, 32, 32) for _ in range(2)], torch.zeros(6).long())
    model.on_train_batch_start(batch, 0)
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(10))
    loss = model.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    model.on_after_backward()  # epoch 0 < freeze_prototypes_epochs=1
    assert model.prototypes.weight.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
