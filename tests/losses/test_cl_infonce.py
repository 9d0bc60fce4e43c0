"""cl_infonce against NT-Xent, loop references of both forms, closed forms and gradients."""
import math

import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin.losses import cl_infonce

FORMS = ["out", "in"]


def reference_per_anchor(z, ids, tau, form):
    """Loop over anchors: returns (l_a for every row, mask of anchors with a positive)."""
    zn = z / z.norm(dim=1, keepdim=True)
    n = z.shape[0]
    losses, valid = [], []
    for a in range(n):
        pos = [j for j in range(n) if j != a and int(ids[j]) == int(ids[a])]
        others = [j for j in range(n) if j != a]
        if not pos:
            losses.append(z.new_zeros(()))
            valid.append(False)
            continue
        s = zn @ zn[a] / tau
        log_den = torch.log(sum(torch.exp(s[j]) for j in others))
        if form == "out":  # SupCon L_out: mean log-probability over positives
            l_a = -sum(s[p] - log_den for p in pos) / len(pos)
        else:  # positives summed inside the log
            l_a = -(torch.log(sum(torch.exp(s[p]) for p in pos)) - log_den)
        losses.append(l_a)
        valid.append(True)
    return torch.stack(losses), torch.tensor(valid)


def reference_loss(z, ids, tau, form):
    per_anchor, valid = reference_per_anchor(z, ids, tau, form)
    if not valid.any():
        return z.new_zeros(())
    return per_anchor[valid].sum() / valid.sum()


def nt_xent(z1, z2, tau):
    """SimCLR's NT-Xent: 2B anchors, the other view is the positive, self left out."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    b = z1.shape[0]
    logits = z @ z.T / tau
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(logits, targets)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("b", [1, 2, 5, 16])
@pytest.mark.parametrize("d", [2, 8, 32])
@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0])
def test_instance_ids_two_views_equal_nt_xent(form, b, d, tau):
    g = torch.Generator().manual_seed(b * 1000 + d)
    z1 = torch.randn(b, d, generator=g, dtype=torch.float64)
    z2 = torch.randn(b, d, generator=g, dtype=torch.float64)
    ids = torch.arange(b).repeat(2)
    loss = cl_infonce(torch.cat([z1, z2]), ids, temperature=tau, form=form)
    assert loss.item() == pytest.approx(nt_xent(z1, z2, tau).item(), abs=1e-5)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_ids_match_loop_reference(form, views, seed):
    g = torch.Generator().manual_seed(seed)
    b = 7
    z = torch.randn(views * b, 5, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 4, (b,), generator=g).repeat(views)
    loss = cl_infonce(z, ids, temperature=0.2, form=form)
    assert loss.item() == pytest.approx(reference_loss(z, ids, 0.2, form).item(), abs=1e-10)


def test_forms_differ_when_an_anchor_has_several_positives():
    # Guards against both forms silently computing the same thing.
    g = torch.Generator().manual_seed(3)
    z = torch.randn(12, 4, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 0, 0, 1, 1, 1]).repeat(2)
    out = cl_infonce(z, ids, 0.3, "out")
    inn = cl_infonce(z, ids, 0.3, "in")
    # Jensen: log of a mean >= mean of logs, so L_in <= L_out, strictly for unequal sims.
    assert inn.item() < out.item() - 1e-3


@pytest.mark.parametrize("form", FORMS)
def test_one_cluster_spanning_the_batch(form):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(10, 6, generator=g, dtype=torch.float64)
    ids = torch.full((10,), 3)
    loss = cl_infonce(z, ids, 0.1, form)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference_loss(z, ids, 0.1, form).item(), abs=1e-10)
    if form == "in":  # the positives are the whole denominator: -log(1)
        assert loss.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_no_positive_anywhere_returns_connected_zero(form):
    z = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    loss = cl_infonce(z, torch.arange(6), 0.1, form)
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None
    assert torch.isfinite(z.grad).all() and (z.grad == 0).all()


@pytest.mark.parametrize("form", FORMS)
def test_single_row_returns_connected_zero(form):
    z = torch.randn(1, 3, requires_grad=True)
    loss = cl_infonce(z, torch.tensor([0]), 0.1, form)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("form", FORMS)
def test_singleton_anchors_are_excluded(form):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5])  # rows 2, 6, 7, 8 have no positive
    loss = cl_infonce(z, ids, 0.25, form)
    per_anchor, valid = reference_per_anchor(z, ids, 0.25, form)
    assert valid.tolist() == [True, True, False, True, True, True, False, False, False]
    expected = per_anchor[valid].mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-10)
    # Excluded anchors still sit in everyone's denominator, so they receive gradient too.
    (grad,) = torch.autograd.grad(loss, z)
    (grad_ref,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(grad, grad_ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("k,b", [(2, 1), (3, 5), (8, 8)])
def test_identical_embeddings_closed_form(k, b):
    # All similarities equal s: P(a) has exp share |P|/(N-1) of the denominator.
    #   in:  l_a = -log(|P| e^s / ((N-1) e^s)) = log((N-1)/|P|)
    #   out: l_a = -(1/|P|) sum_p (s - log((N-1) e^s)) = log(N-1)
    total = 2 * b  # b images, two views, k clusters
    z = torch.ones(total, 4, dtype=torch.float64)
    ids = (torch.arange(b) % k).repeat(2)
    counts = torch.bincount(ids)
    num_pos = counts[ids] - 1
    assert (num_pos > 0).all()
    expected_in = torch.log((total - 1) / num_pos.double()).mean()
    assert cl_infonce(z, ids, 0.3, "in").item() == pytest.approx(expected_in.item(), abs=1e-12)
    assert cl_infonce(z, ids, 0.3, "out").item() == pytest.approx(math.log(total - 1), abs=1e-12)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("b", [1, 4, 32])
def test_instance_ids_identical_embeddings_give_log_2n_minus_1(form, b):
    z = torch.ones(2 * b, 8) * 0.3
    loss = cl_infonce(z, torch.arange(b).repeat(2), 0.1, form)
    assert loss.item() == pytest.approx(math.log(2 * b - 1), abs=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_gradcheck(form):
    g = torch.Generator().manual_seed(6)
    z = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 1, 0, 1, 2, 2, 3])
    assert torch.autograd.gradcheck(lambda x: cl_infonce(x, ids, 0.4, form), (z,))


@pytest.mark.parametrize("form", FORMS)
def test_gradient_matches_reference_autograd(form):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 3, (6,), generator=g).repeat(2)
    (grad,) = torch.autograd.grad(cl_infonce(z, ids, 0.2, form), z)
    (grad_ref,) = torch.autograd.grad(reference_loss(z, ids, 0.2, form), z)
    torch.testing.assert_close(grad, grad_ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tau", [0.01, 0.02, 0.1])  # 0.01 and 0.02 take the row-max shift in float32
def test_float32_gradient_matches_float64_reference_on_both_shift_paths(form, tau):
    g = torch.Generator().manual_seed(13)
    z = torch.randn(20, 6, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 4, (10,), generator=g).repeat(2)
    z64 = z.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(reference_loss(z64, ids, tau, form), z64)
    z32 = z.float().requires_grad_(True)
    (grad,) = torch.autograd.grad(cl_infonce(z32, ids, tau, form), z32)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad.double(), grad_ref, atol=1e-3 * grad_ref.abs().max().item(), rtol=0)


@pytest.mark.parametrize("form", FORMS)
def test_num_clusters_path_equals_unique_path(form):
    g = torch.Generator().manual_seed(8)
    z = torch.randn(20, 6, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 12, (10,), generator=g).repeat(2)  # some of 0..15 unused
    a = cl_infonce(z, ids, 0.2, form)
    b = cl_infonce(z, ids, 0.2, form, num_clusters=16)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_invariant_to_relabelling_and_row_order(form):
    g = torch.Generator().manual_seed(9)
    z = torch.randn(16, 6, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 5, (8,), generator=g).repeat(2)
    base = cl_infonce(z, ids, 0.2, form).item()
    relabel = torch.randperm(5, generator=g) * 37 + 1000
    assert cl_infonce(z, relabel[ids], 0.2, form).item() == pytest.approx(base, abs=1e-12)
    perm = torch.randperm(16, generator=g)
    assert cl_infonce(z[perm], ids[perm], 0.2, form).item() == pytest.approx(base, abs=1e-12)


def test_scale_of_rows_does_not_matter():
    g = torch.Generator().manual_seed(10)
    z = torch.randn(8, 4, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 1, 2, 3]).repeat(2)
    scale = torch.rand(8, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    assert cl_infonce(z * scale, ids).item() == pytest.approx(cl_infonce(z, ids).item(), abs=1e-12)


def test_float32_matches_float64_and_is_stable_at_small_temperature():
    g = torch.Generator().manual_seed(11)
    z = torch.randn(64, 16, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 10, (32,), generator=g).repeat(2)
    for form in FORMS:
        for tau in (0.01, 0.1):
            l64 = cl_infonce(z, ids, tau, form)
            l32 = cl_infonce(z.float(), ids, tau, form)
            assert l32.dtype == torch.float32
            assert torch.isfinite(l32)
            assert l32.item() == pytest.approx(l64.item(), rel=1e-4)


def test_gather_false_without_process_group_is_the_same():
    g = torch.Generator().manual_seed(12)
    z = torch.randn(10, 3, generator=g)
    ids = torch.tensor([0, 1, 1, 2, 0]).repeat(2)
    assert cl_infonce(z, ids, gather=False).item() == cl_infonce(z, ids, gather=True).item()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(form="mean"), "unknown form 'mean'"),
        (dict(num_clusters=0), "num_clusters"),
        (dict(num_clusters=2), r"\[0, num_clusters=2\)"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    z = torch.randn(6, 3)
    ids = torch.tensor([0, 1, 2]).repeat(2)
    with pytest.raises(ValueError, match=match):
        cl_infonce(z, ids, **kwargs)


@pytest.mark.parametrize(
    "z,ids,match",
    [
        (torch.randn(6), torch.arange(6), "z must be a 2-D"),
        (torch.randn(6, 3), torch.arange(6).view(3, 2), "ids must be a 1-D"),
        (torch.randn(6, 3), torch.arange(5), "ids has 5 entries but z has 6 rows"),
        (torch.randn(6, 3), torch.arange(6).float(), "integer"),
        (torch.randn(6, 3), torch.tensor([0, 1, -1, 0, 1, -1]), "ids must be >= 0"),
    ],
)
def test_bad_inputs_raise(z, ids, match):
    with pytest.raises(ValueError, match=match):
        cl_infonce(z, ids)
