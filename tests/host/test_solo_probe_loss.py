"""The solo-learn adapter's guard for unlabelled batches: solo-learn's online probe loss,
cross_entropy with ignore_index=-1, is NaN when no target is known; the wrapped step gives
zero instead and leaves labelled batches alone. Runs on any host (a stand-in base class)."""
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin.host.solo import zero_probe_loss_without_labels
from tests.helpers import HOST_READS, DispatchedOps as Reads


class Base:
    """Stands in for solo-learn's BaseMethod: the same probe loss as its _base_shared_step."""

    def __init__(self):
        self.classifier = torch.nn.Linear(3, 2)

    def _base_shared_step(self, X, targets):
        logits = self.classifier(X)
        return {"logits": logits, "loss": F.cross_entropy(logits, targets, ignore_index=-1)}


def test_unlabelled_batch_gives_zero_probe_loss_and_labelled_ones_are_unchanged():
    x = torch.randn(4, 3)
    unknown, mixed = torch.full((4,), -1), torch.tensor([0, -1, 1, -1])
    assert torch.isnan(Base()._base_shared_step(x, unknown)["loss"])  # the defect
    torch.manual_seed(0)
    reference = Base()._base_shared_step(x, mixed)["loss"]
    zero_probe_loss_without_labels(Base)
    zero_probe_loss_without_labels(Base)  # wrapping twice is wrapping once
    torch.manual_seed(0)
    model = Base()
    out = model._base_shared_step(x, unknown)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    out["loss"].backward()
    assert model.classifier.weight.grad.abs().sum() == 0
    torch.manual_seed(0)
    expected = reference.item()
    with Reads() as reads:
        got = Base()._base_shared_step(x, mixed)["loss"].item()
    assert got == pytest.approx(expected, abs=1e-6)
    # the .item() above is the only read: telling the two cases apart reads nothing
    assert [n for n in reads.names if n in HOST_READS] == ["_local_scalar_dense"]
    assert not hasattr(Base._base_shared_step.__wrapped__, "__wrapped__")
