"""cross_view_infonce (CMC's two-view loss) against a loop reference, closed forms, the
symmetry of its two directions, gradients and input checks."""
import math

import pytest
import torch

from clinfonce_plugin.losses import cross_view_infonce


def loop_reference(a, b, tau):
    """sum over both directions of -(1/N) sum_i log(e^{s(x_i, y_i)} / sum_j e^{s(x_i, y_j)})."""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    n = a.shape[0]
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            num = math.exp(float(x[i] @ y[i]) / tau)
            den = sum(math.exp(float(x[i] @ y[j]) / tau) for j in range(n))
            total += -math.log(num / den) / n
    return total


@pytest.mark.parametrize("n", [1, 2, 5, 12])
@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5, 1.0])
def test_matches_the_loop_reference(n, d, tau):
    g = torch.Generator().manual_seed(n * 100 + d)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = torch.randn(n, d, generator=g, dtype=torch.float64)
    assert cross_view_infonce(a, b, tau).item() == pytest.approx(loop_reference(a, b, tau),
                                                                 rel=1e-10)


def test_closed_forms():
    # every similarity equal (all rows of b orthogonal to all rows of a, and vice versa):
    # each direction is log N
    a = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 3.0, 1.0]])
    assert cross_view_infonce(a, b, 0.3).item() == pytest.approx(2 * math.log(3), rel=1e-6)
    # one sample: its positive is the only candidate
    assert cross_view_infonce(torch.randn(1, 5), torch.randn(1, 5), 0.1).item() == \
        pytest.approx(0.0, abs=1e-6)
    # identical orthonormal views: -log(e^{1/t} / (e^{1/t} + (N - 1))) per anchor, twice
    eye = torch.eye(4, dtype=torch.float64)
    t = 0.5
    expected = 2 * -math.log(math.exp(1 / t) / (math.exp(1 / t) + 3))
    assert cross_view_infonce(eye, eye, t).item() == pytest.approx(expected, rel=1e-12)


def test_symmetric_in_its_views_and_scale_invariant():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    torch.testing.assert_close(cross_view_infonce(a, b, 0.2), cross_view_infonce(b, a, 0.2))
    torch.testing.assert_close(cross_view_infonce(3 * a, b, 0.2), cross_view_infonce(a, b, 0.2))


def test_gradients_reach_both_views_and_match_finite_differences():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: cross_view_infonce(x, y, 0.3), (a, b))


def test_float32_close_to_float64():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)
    assert cross_view_infonce(a, b, 0.05).item() == pytest.approx(
        cross_view_infonce(a.double(), b.double(), 0.05).item(), rel=1e-5)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="Illegal temperature: 0"):
        cross_view_infonce(torch.zeros(2, 3), torch.zeros(2, 3), 0)
    with pytest.raises(ValueError, match="same shape"):
        cross_view_infonce(torch.zeros(2, 3), torch.zeros(3, 3), 0.1)
    with pytest.raises(ValueError, match=r"b must be a 2-D tensor \(M, D\), got \(3,\)"):
        cross_view_infonce(torch.zeros(3, 1), torch.zeros(3), 0.1)
