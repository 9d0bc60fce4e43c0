"""The online probe's loss and accuracies (both hosts): values against references over the
known rows computed here, zero without a known target, and no read back to the host."""
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin.host.probe import accuracy_at_k, probe_loss
from tests.helpers import HOST_READS, DispatchedOps as Reads


def reference_accuracy(logits, targets, k):
    rows = [i for i in range(len(targets)) if targets[i] != -1]
    if not rows:
        return 0.0
    hits = sum(int(targets[i]) in logits[i].argsort(descending=True)[:k].tolist() for i in rows)
    return hits / len(rows)


@pytest.mark.parametrize("targets", [[0, -1, 3, 5, -1, 2, 1, 4], [0, 1, 2, 3, 4, 5, 6, 0],
                                     [-1] * 8])
def test_values_over_the_known_rows(targets):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(targets)
    known = t != -1
    loss = probe_loss(logits, t)
    if known.any():
        expected = F.cross_entropy(logits[known], t[known])
        assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
        (g1,) = torch.autograd.grad(loss, logits)
        (g2,) = torch.autograd.grad(expected, logits)
        torch.testing.assert_close(g1, g2, atol=1e-12, rtol=0)
    else:  # cross_entropy's mean would be 0/0
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, logits)
        assert (grad == 0).all()
    for k, acc in zip((1, 5), accuracy_at_k(logits.detach(), t, (1, 5))):
        assert acc.item() == pytest.approx(reference_accuracy(logits.detach(), t, k), abs=1e-7)


def test_nothing_is_read_back_to_the_host():
    logits = torch.randn(6, 5, requires_grad=True)
    t = torch.tensor([0, -1, 2, -1, 4, 1])
    with Reads() as reads:
        probe_loss(logits, t).backward()
        accuracy_at_k(logits.detach(), t, (1, 5))
    assert not HOST_READS & set(reads.names), reads.names
