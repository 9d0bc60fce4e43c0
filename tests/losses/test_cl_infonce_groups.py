"""cl_infonce_groups: G contrasts in one pass equal the sum of G cl_infonce calls (values
and gradients, both forms, both shift paths, given and remapped cluster counts, the
accelerator path's device checks); the loss computes in float32 under autocast."""
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin.losses.cl_infonce import _contrast, cl_infonce, cl_infonce_groups
from clinfonce_plugin.utils import devices
from tests.losses.test_cl_infonce import reference_loss

FORMS = ["out", "in"]


def separate(zs, ids, tau, form, ks=None, gathered=None):
    ks = ks or [None] * len(zs)
    gathered = gathered or [None] * len(zs)
    return sum(cl_infonce(z, i, tau, form, num_clusters=k, gathered=g)
               for z, i, k, g in zip(zs, ids, ks, gathered))


def grads(loss, zs):
    return torch.autograd.grad(loss, zs)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tau", [0.2, 0.005])  # 0.005 takes the row-max shift in float64
@pytest.mark.parametrize("ks", [None, [5, 3, 7], [None, 3, None]])
def test_groups_equal_the_sum_of_separate_calls(form, tau, ks):
    g = torch.Generator().manual_seed(0)
    zs = [torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
          for _ in range(3)]
    ids = [torch.randint(0, 5, (10,), generator=g), torch.randint(0, 3, (10,), generator=g),
           torch.randint(0, 7, (10,), generator=g)]
    ids[1][:3] = torch.tensor([0, 1, 2])  # a singleton or two: anchors without a positive
    together = cl_infonce_groups(zs, ids, tau, form, num_clusters=ks)
    apart = separate(zs, ids, tau, form, ks)
    # and against the loop reference, independently of cl_infonce
    looped = sum(reference_loss(z, i, tau, form) for z, i in zip(zs, ids))
    assert together.item() == pytest.approx(apart.item(), abs=1e-10)
    assert together.item() == pytest.approx(looped.item(), abs=1e-8)
    for a, b, c in zip(grads(together, zs), grads(apart, zs), grads(looped, zs)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
        torch.testing.assert_close(a, c, atol=1e-8, rtol=0)


@pytest.mark.parametrize("form", FORMS)
def test_gathered_groups_equal_separate_gathered_calls(form):
    g = torch.Generator().manual_seed(1)
    keys = [torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
            for _ in range(2)]
    labels = [torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([0, 1, 0, 1, 0, 1, 2, 2])]
    gathered = list(zip(keys, labels))
    together = cl_infonce_groups(keys, labels, 0.3, form, [4, 3], gathered=gathered)
    apart = separate(keys, labels, 0.3, form, [4, 3], gathered)
    assert together.item() == pytest.approx(apart.item(), abs=1e-12)
    for a, b in zip(grads(together, keys), grads(apart, keys)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_no_id_is_shared_across_groups():
    # the same ids in two groups: rows of group 0 must not be positives of group 1's rows
    g = torch.Generator().manual_seed(2)
    zs = [torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    ids = [torch.tensor([0, 0, 1, 1, 2, 2])] * 2
    for form in FORMS:
        expected = sum(reference_loss(z, i, 0.5, form) for z, i in zip(zs, ids))
        got = cl_infonce_groups(zs, ids, 0.5, form, num_clusters=[3, 3])
        assert got.item() == pytest.approx(expected.item(), abs=1e-10)


def test_accelerator_path_checks_each_group(monkeypatch):
    monkeypatch.setattr(devices, "host_reads_free", lambda tensor: False)
    g = torch.Generator().manual_seed(3)
    zs = [torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    ids = [torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 2, 2])]
    expected = separate(zs, ids, 0.5, "out", [2, 3])
    assert torch.allclose(cl_infonce_groups(zs, ids, 0.5, num_clusters=[2, 3]), expected)
    # 2 is in range for group 1 (3 clusters) but not for group 0 (2 clusters)
    with pytest.raises(RuntimeError):
        cl_infonce_groups(zs, [ids[1], ids[0]], 0.5, num_clusters=[2, 3])
    with pytest.raises(RuntimeError):
        cl_infonce_groups(zs, [ids[0], torch.tensor([0, 1, 2, 3])], 0.5, num_clusters=[3, 3])


def test_host_path_names_the_group():
    zs = [torch.randn(4, 3) for _ in range(2)]
    with pytest.raises(ValueError, match=r"range \[0, 3\] \(group 1\)"):
        cl_infonce_groups(zs, [torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 2, 3])], 0.5,
                          num_clusters=[2, 3])


def test_groups_need_equal_shapes_and_one_ids_per_group():
    with pytest.raises(ValueError, match="same"):
        cl_infonce_groups([torch.randn(4, 3), torch.randn(6, 3)],
                          [torch.zeros(4, dtype=torch.long), torch.zeros(6, dtype=torch.long)])
    with pytest.raises(ValueError, match="one ids tensor per group"):
        cl_infonce_groups([torch.randn(4, 3)] * 2, [torch.zeros(4, dtype=torch.long)])


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="needs a CUDA device"))])
@pytest.mark.parametrize("form", FORMS)
def test_float32_arithmetic_under_bf16_autocast(form, device):
    # autocast would run the similarity GEMM in bf16 (an error of ~1e-3 at tau = 0.1); the
    # loss turns it off, so under autocast it equals the float32 loss of the same rows
    g = torch.Generator().manual_seed(4)
    z = torch.randn(64, 16, generator=g).to(device)
    ids = torch.randint(0, 8, (32,), generator=g).repeat(2).to(device)
    expected = cl_infonce(z, ids, 0.1, form)
    with torch.autocast(device, dtype=torch.bfloat16):
        got = cl_infonce(z, ids, 0.1, form)
        bf16_input = cl_infonce(z.bfloat16(), ids, 0.1, form)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)
    # a bf16 input is promoted, not computed in bf16: only its rounding remains
    assert bf16_input.item() == pytest.approx(cl_infonce(z.bfloat16().float(), ids, 0.1,
                                                         form).item(), abs=1e-5)


def test_a_device_autocast_does_not_know_runs():
    # the autocast guard is a no-op there (torch.autocast("meta") raises); meta runs the
    # accelerator path's shapes without values
    z = torch.randn(8, 4, device="meta", requires_grad=True)
    ids = torch.tensor([0, 1, 2, 3] * 2, device="meta")
    loss = cl_infonce_groups([z, z], [ids, ids], 0.5, num_clusters=[4, 4])
    assert loss.shape == () and loss.device.type == "meta"


def block_reference(x, ids, offset, m, tau, form):
    """Loop reference of ``_contrast``: anchors rows offset..offset+m of each group, keys
    all N rows (normalised as F.normalize does), each group's mean over the anchors with a
    positive, divided by the number of rows of the whole batch that have one."""
    total = x.new_zeros(())
    for keys, y in zip(F.normalize(x, dim=-1), ids):
        n = len(y)
        has_pos = [sum(int(y[j] == y[i]) for j in range(n)) > 1 for i in range(n)]
        for a in range(offset, offset + m):
            pos = [j for j in range(n) if j != a and y[j] == y[a]]
            if not pos:
                continue
            s = keys @ keys[a] / tau
            others = [j for j in range(n) if j != a]
            lse = torch.logsumexp(s[others], 0)
            l_a = lse - s[pos].mean() if form == "out" else lse - torch.logsumexp(s[pos], 0)
            total = total + l_a / sum(has_pos)
    return total


# tau 0.002: the row-max shift in float64 (for "in", positives 1000 logits down underflow:
# cl_infonce documents that limit)
@pytest.mark.parametrize("form, tau", [("out", 0.3), ("in", 0.3), ("out", 0.002)])
def test_an_anchor_block_against_the_loop_reference_with_gradients(form, tau):
    # what one rank of a gathered batch computes: anchors rows 3..6 of 10 keys, two groups
    # (the closed-form backward of the "out" form, autograd for "in")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[0, 1, 1, 2, 0, 3, 1, 2, 4, 0], [0, 0, 1, 1, 2, 2, 3, 3, 4, 5]])
    flat_ids = ids + torch.tensor([[0], [6]])
    got = _contrast(x, flat_ids, 12, 3, 4, 1, tau, form)
    expected = block_reference(x, ids, 3, 4, tau, form)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    for a, b in zip(grads(got, [x]), grads(expected, [x])):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("form", FORMS)
def test_zero_and_tiny_rows_get_f_normalize_gradients(form):
    # a zero row is clamped by the normalisation (|x| < eps): its gradient is dL/dX / eps
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 8, 3, generator=g, dtype=torch.float64)
    x[0, 2] = 0.0
    x[0, 5] *= 1e-13
    x.requires_grad_()
    ids = torch.tensor([[0, 0, 1, 1, 0, 1, 2, 2]])
    got = _contrast(x, ids, 3, 0, 8, 1, 0.5, form)
    expected = block_reference(x, ids, 0, 8, 0.5, form)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    (a,), (b,) = grads(got, [x]), grads(expected, [x])
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, atol=0, rtol=1e-8)


def test_gradcheck_of_groups_with_an_anchor_block():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[0, 1, 0, 1, 2, 2], [3, 3, 4, 5, 4, 5]])
    assert torch.autograd.gradcheck(lambda t: _contrast(t, ids, 6, 2, 3, 2, 0.4, "out"), (x,))
