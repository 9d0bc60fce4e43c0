"""wcl_swap: hand-computed tiny cases and a loop reference of L_sup(V1, y2) + L_sup(V2, y1);
every WCL loss term with the large views gathered by the caller (``keys``) equals the term
gathering them itself. (The small-crop terms against loop references:
tests/methods/test_wcl_method.py, whose references they share.)"""
import math

import pytest
import torch

from clinfonce_plugin.losses import (
    cl_infonce,
    instance_nce,
    multicrop_nce,
    multicrop_swap,
    wcl_swap,
)


def unit(deg):
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


def sup_loop(v, y, tau, form):
    """Within-view supervised contrastive loss, one anchor at a time."""
    vn = v / v.norm(dim=1, keepdim=True)
    total, count = 0.0, 0
    for a in range(v.shape[0]):
        others = [j for j in range(v.shape[0]) if j != a]
        pos = [j for j in others if int(y[j]) == int(y[a])]
        if not pos:
            continue
        s = {j: float(vn[a] @ vn[j]) / tau for j in others}
        log_den = math.log(sum(math.exp(s[j]) for j in others))
        if form == "out":
            total += -sum(s[p] - log_den for p in pos) / len(pos)
        else:
            total += -(math.log(sum(math.exp(s[p]) for p in pos)) - log_den)
        count += 1
    return total / count if count else 0.0


def test_hand_computed_three_points_per_view():
    tau = 0.5
    # View 1 at 0, 90, 180 degrees; cosines 0 (0-90), -1 (0-180), 0 (90-180).
    v1 = torch.tensor([unit(0), unit(90), unit(180)], dtype=torch.float64)
    # View 2 at 0, 60, 120 degrees; cosines 1/2 (0-60), -1/2 (0-120), 1/2 (60-120).
    v2 = torch.tensor([unit(0), unit(60), unit(120)], dtype=torch.float64)
    y1 = torch.tensor([0, 1, 1])  # weak labels from view 1 supervise view 2
    y2 = torch.tensor([0, 0, 1])  # weak labels from view 2 supervise view 1
    # L_sup(V1, y2): anchors 0, 1 (row 2 has no positive).
    #   a=0: s01 = 0, s02 = -2   -> l = log(e^0 + e^-2) - 0 = log(1 + e^-2)
    #   a=1: s10 = 0, s12 = 0    -> l = log(2)
    # L_sup(V2, y1): anchors 1, 2 (row 0 has no positive).
    #   a=1: s10 = 1, s12 = 1    -> l = log(2e) - 1 = log(2)
    #   a=2: s20 = -1, s21 = 1   -> l = log(e^-1 + e) - 1 = log(1 + e^-2)
    # Each L_sup = (log(1 + e^-2) + log 2) / 2; one positive per anchor, so both forms agree.
    expected = math.log(1 + math.exp(-2)) + math.log(2)
    for form in ("out", "in"):
        loss = wcl_swap(v1, v2, y1, y2, temperature=tau, form=form)
        assert loss.item() == pytest.approx(expected, abs=1e-12)
        ref = sup_loop(v1, y2, tau, form) + sup_loop(v2, y1, tau, form)
        assert loss.item() == pytest.approx(ref, abs=1e-12)


def test_hand_computed_forms_differ_with_two_positives():
    tau = 0.5
    v1 = torch.tensor([unit(0), unit(90), unit(180)], dtype=torch.float64)
    v2 = torch.tensor([unit(0), unit(0), unit(90)], dtype=torch.float64)
    y1 = torch.tensor([0, 1, 2])  # no positive for view 2: L_sup(V2, y1) = 0
    y2 = torch.tensor([4, 4, 4])  # every row of view 1 is a positive of every other
    # L_sup(V1, y2), sims: s01 = 0, s02 = -2, s12 = 0.
    #   out: a=0: log(1 + e^-2) - (0 - 2)/2 = log(1 + e^-2) + 1
    #        a=1: log(2) - 0
    #        a=2: same as a=0
    #   in : positives are the whole denominator -> 0 for every anchor.
    expected_out = (2 * (math.log(1 + math.exp(-2)) + 1) + math.log(2)) / 3
    assert wcl_swap(v1, v2, y1, y2, tau, form="out").item() == pytest.approx(expected_out, abs=1e-12)
    assert wcl_swap(v1, v2, y1, y2, tau, form="in").item() == pytest.approx(0.0, abs=1e-12)
    # WCL's official code averages log-probabilities over positives: that is the default.
    assert wcl_swap(v1, v2, y1, y2, tau).item() == pytest.approx(expected_out, abs=1e-12)


def test_labels_are_swapped_between_views():
    g = torch.Generator().manual_seed(0)
    v1 = torch.randn(10, 4, generator=g, dtype=torch.float64)
    v2 = torch.randn(10, 4, generator=g, dtype=torch.float64)
    y1 = torch.randint(0, 3, (10,), generator=g)
    y2 = torch.randint(0, 3, (10,), generator=g)
    loss = wcl_swap(v1, v2, y1, y2, temperature=0.2)
    assert loss.item() == pytest.approx(
        sup_loop(v1, y2, 0.2, "out") + sup_loop(v2, y1, 0.2, "out"), abs=1e-10
    )
    unswapped = sup_loop(v1, y1, 0.2, "out") + sup_loop(v2, y2, 0.2, "out")
    assert abs(loss.item() - unswapped) > 1e-3
    # Views are contrasted within themselves, never against each other.
    mixed = cl_infonce(torch.cat([v1, v2]), torch.cat([y2, y1]), 0.2)
    assert abs(loss.item() - mixed.item()) > 1e-3


def test_gradients_reach_both_views():
    g = torch.Generator().manual_seed(1)
    v1 = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v2 = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    wcl_swap(v1, v2, y, y.flip(0)).backward()
    assert v1.grad.abs().sum() > 0 and v2.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((4, 3), (5, 3), (4,), (4,)), "same shape"),
        (((4, 3), (4, 3), (4,), (3,)), "y1 and y2"),
        (((4,), (4,), (4,), (4,)), "2-D"),
    ],
)
def test_bad_shapes_raise(shapes, match):
    v1, v2 = torch.randn(*shapes[0]), torch.randn(*shapes[1])
    y1, y2 = torch.zeros(shapes[2], dtype=torch.long), torch.zeros(shapes[3], dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        wcl_swap(v1, v2, y1, y2)


# ------------------------------------------------ keys: views gathered once by the caller
# (one process: the gathered batch is the local one; the 2-process case is pinned by the
# wcl method's DDP test, tests/methods/test_wcl_method.py)


def _views(seed=2, b=6, d=4):
    g = torch.Generator().manual_seed(seed)
    v1 = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    v2 = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    small = torch.randn(2 * b, d, generator=g, dtype=torch.float64, requires_grad=True)
    y1 = torch.tensor([0, 0, 1, 1, 2, 2])
    y2 = torch.tensor([0, 1, 1, 2, 2, 2])
    return v1, v2, small, y1, y2


def _value_and_grads(loss, tensors):
    grads = torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True)
    return float(loss.detach()), [torch.zeros_like(t) if g is None else g
                                  for t, g in zip(tensors, grads)]


@pytest.mark.parametrize("form", ["out", "in"])
def test_given_keys_give_the_same_values_and_gradients(form):
    v1, v2, small, y1, y2 = _views()
    # the keys as their own leaves: the gradient a term sends through them must be the part
    # of the gradient that the term gathering itself sends to the views as keys
    k1, k2 = (v.detach().clone().requires_grad_() for v in (v1, v2))
    keys = (k1, k2)
    cases = [
        (wcl_swap(v1, v2, y1, y2, 0.3, form), wcl_swap(v1, v2, y1, y2, 0.3, form, keys=keys)),
        (multicrop_nce(small, (v1, v2), 0.3), multicrop_nce(small, (v1, v2), 0.3, keys=keys)),
        (multicrop_swap(small, (v1, v2), (y1, y2), 0.3),
         multicrop_swap(small, (v1, v2), (y1, y2), 0.3, keys=keys)),
        (cl_infonce(torch.cat([v1, v2]), torch.arange(6).repeat(2), 0.3, form="in"),
         instance_nce(v1, v2, 0.3, keys=keys)),
    ]
    for own, shared in cases:
        value, (g1, g2, g_small) = _value_and_grads(own, (v1, v2, small))
        value_k, (a1, a2, a_small, gk1, gk2) = _value_and_grads(shared, (v1, v2, small, k1, k2))
        assert value_k == pytest.approx(value, abs=1e-12)
        assert gk1.abs().sum() > 0 and gk2.abs().sum() > 0  # the keys are used
        torch.testing.assert_close(a1 + gk1, g1, atol=1e-12, rtol=0)
        torch.testing.assert_close(a2 + gk2, g2, atol=1e-12, rtol=0)
        torch.testing.assert_close(a_small, g_small, atol=1e-12, rtol=0)


def test_instance_nce_is_nt_xent_with_and_without_keys():
    v1, v2, _, _, _ = _views(seed=4)
    # instance ids, two views: 12 rows, one positive each -> both forms are NT-Xent
    expected = sup_loop(torch.cat([v1, v2]).detach(), torch.arange(6).repeat(2), 0.5, "in")
    assert instance_nce(v1, v2, 0.5).item() == pytest.approx(expected, abs=1e-12)
    assert instance_nce(v1, v2, 0.5, keys=(v1, v2)).item() == pytest.approx(expected, abs=1e-12)


def test_bad_gathered_inputs_raise():
    v1, v2, _, y1, y2 = _views()
    with pytest.raises(ValueError, match=r"N=6 \(the gathered batch\) entries"):
        wcl_swap(v1, v2, y1[:3], y2[:3], keys=(v1, v2))
    with pytest.raises(ValueError, match=r"gathered must be \(\(N, D\), \(N,\)\) with N = 6"):
        cl_infonce(v1, y1, gathered=(v1[:4], y1[:4]))
    with pytest.raises(ValueError, match="ids must be this rank's block of the gathered ids"):
        cl_infonce(v1, y1, gathered=(v1, y2))
