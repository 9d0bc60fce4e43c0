"""Two gloo processes: per-rank losses and gradients equal the single-process loss on the
concatenated batch (DDP divides the summed gradients by the world size)."""
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin.losses import cl_infonce, wcl_swap
from clinfonce_plugin.utils.distributed import (
    all_gather_no_grad,
    all_reduce_sum_no_grad,
    gather_with_grad,
    get_rank,
    get_world_size,
)
from tests.ddp import run_ranks

WORLD = 2
LOCAL_B = 4  # images per rank; two views -> 8 rows per rank
TAU = 0.3


def reference_per_anchor(z, ids, tau, form):
    """Masked-matrix reference: (l_a for every row, valid mask); l_a = 0 where invalid."""
    zn = F.normalize(z, dim=1)
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    s = zn @ zn.T / tau
    log_prob = s - torch.logsumexp(s.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    pos = (ids[:, None] == ids[None, :]) & ~eye
    num_pos = pos.sum(1)
    valid = num_pos > 0
    per_anchor = torch.zeros(n, dtype=z.dtype)
    if form == "out":
        mean_log_prob = (log_prob * pos).sum(1)[valid] / num_pos[valid]
        per_anchor = per_anchor.index_put((valid.nonzero()[:, 0],), -mean_log_prob)
    else:
        lse_pos = torch.logsumexp(log_prob[valid].masked_fill(~pos[valid], float("-inf")), dim=1)
        per_anchor = per_anchor.index_put((valid.nonzero()[:, 0],), -lse_pos)
    return per_anchor, valid


def reference_loss(z, ids, tau, form):
    per_anchor, valid = reference_per_anchor(z, ids, tau, form)
    return per_anchor.sum() / valid.sum().clamp_min(1)


def make_cases():
    g = torch.Generator().manual_seed(0)
    rows = 2 * LOCAL_B
    cases = {}

    def split(t):
        return list(t.chunk(WORLD))

    # Rank r holds its own [view 1; view 2] rows; ids are image clusters repeated per view.
    image_ids = torch.randint(0, 3, (WORLD, LOCAL_B), generator=g)
    grouped_ids = [image_ids[r].repeat(2) for r in range(WORLD)]
    # Rank 0 has 2 anchors with a positive, rank 1 has 6 (0 matches across ranks).
    unequal_ids = [torch.tensor([0, 0, 10, 11, 12, 13, 14, 15]), torch.tensor([1, 1, 1, 2, 2, 0, 3, 4])]
    singleton_ids = [torch.arange(rows) + r * rows for r in range(WORLD)]
    for form in ("out", "in"):
        for name, ids in (("groups", grouped_ids), ("unequal", unequal_ids), ("none", singleton_ids)):
            z = torch.randn(WORLD * rows, 5, generator=g, dtype=torch.float64)
            cases[f"cl_{name}_{form}"] = dict(kind="cl", form=form, z=split(z), ids=ids, gather=True)
        z = torch.randn(WORLD * rows, 5, generator=g, dtype=torch.float64)
        cases[f"cl_local_{form}"] = dict(kind="cl", form=form, z=split(z), ids=grouped_ids, gather=False)
        v1 = torch.randn(WORLD * LOCAL_B, 5, generator=g, dtype=torch.float64)
        v2 = torch.randn(WORLD * LOCAL_B, 5, generator=g, dtype=torch.float64)
        y1 = torch.randint(0, 3, (WORLD * LOCAL_B,), generator=g)
        y2 = torch.randint(0, 3, (WORLD * LOCAL_B,), generator=g)
        cases[f"wcl_{form}"] = dict(
            kind="wcl", form=form, v1=split(v1), v2=split(v2), y1=split(y1), y2=split(y2)
        )
    return cases


def _worker(rank, cases):
    results = {"rank": get_rank(), "world": get_world_size()}
    for name, case in cases.items():
        if case["kind"] == "cl":
            z = case["z"][rank].clone().requires_grad_()
            loss = cl_infonce(z, case["ids"][rank], TAU, case["form"], gather=case["gather"])
            loss.backward()
            results[name] = dict(loss=loss.detach(), grad=z.grad)
        else:
            v1 = case["v1"][rank].clone().requires_grad_()
            v2 = case["v2"][rank].clone().requires_grad_()
            loss = wcl_swap(v1, v2, case["y1"][rank], case["y2"][rank], TAU, case["form"])
            loss.backward()
            results[name] = dict(loss=loss.detach(), grad1=v1.grad, grad2=v2.grad)
    # The helpers on their own: values, and the gradient of sum(gathered * weights).
    x = torch.full((2, 3), float(rank + 1), requires_grad=True)
    gathered = gather_with_grad(x)
    weights = torch.arange(WORLD * 2 * 3, dtype=torch.float32).view(-1, 3) * (rank + 1)
    (gathered * weights).sum().backward()
    results["helpers"] = dict(
        gathered=gathered.detach(),
        grad=x.grad,
        ints=all_gather_no_grad(torch.tensor([rank, 10 + rank])),
        summed=all_reduce_sum_no_grad(torch.tensor([1.0, rank])),
    )
    try:  # unequal local batches must fail on every rank, not hang
        n = 3 + rank
        cl_infonce(torch.randn(n, 4), torch.zeros(n, dtype=torch.long))
        results["unequal_rows_error"] = None
    except ValueError as err:
        results["unequal_rows_error"] = str(err)
    return results


@pytest.fixture(scope="module")
def ddp_run():
    cases = make_cases()
    return cases, run_ranks(_worker, cases, world_size=WORLD)


def _blocks(t):
    return t.chunk(WORLD)


@pytest.mark.parametrize("name", ["groups", "unequal", "none"])
@pytest.mark.parametrize("form", ["out", "in"])
def test_cl_infonce_ddp_equals_single_process(ddp_run, name, form):
    cases, results = ddp_run
    case = cases[f"cl_{name}_{form}"]
    z_all = torch.cat(case["z"]).requires_grad_()
    ids_all = torch.cat(case["ids"])
    per_anchor, valid = reference_per_anchor(z_all, ids_all, TAU, form)
    full = per_anchor.sum() / valid.sum().clamp_min(1)
    (grad_full,) = torch.autograd.grad(full, z_all)
    if name == "unequal":
        assert [int(v.sum()) for v in _blocks(valid)] == [2, 6]
    if name == "none":
        assert not valid.any()
    per_rank = [results[r][f"cl_{name}_{form}"] for r in range(WORLD)]
    # Each rank: its anchors' share, normalised by the global count of valid anchors.
    for r, (pa, va) in enumerate(zip(_blocks(per_anchor), _blocks(valid))):
        expected_r = pa[va].sum() * WORLD / valid.sum().clamp_min(1)
        assert per_rank[r]["loss"].item() == pytest.approx(expected_r.item(), abs=1e-10)
    mean_loss = sum(res["loss"] for res in per_rank) / WORLD
    assert mean_loss.item() == pytest.approx(full.item(), abs=1e-10)
    for r, g_full in enumerate(_blocks(grad_full)):
        assert torch.isfinite(per_rank[r]["grad"]).all()
        torch.testing.assert_close(per_rank[r]["grad"] / WORLD, g_full, atol=1e-10, rtol=0)


@pytest.mark.parametrize("form", ["out", "in"])
def test_cl_infonce_gather_false_is_local(ddp_run, form):
    cases, results = ddp_run
    case = cases[f"cl_local_{form}"]
    for r in range(WORLD):
        z = case["z"][r].clone().requires_grad_()
        expected = reference_loss(z, case["ids"][r], TAU, form)
        (grad,) = torch.autograd.grad(expected, z)
        got = results[r][f"cl_local_{form}"]
        assert got["loss"].item() == pytest.approx(expected.item(), abs=1e-10)
        torch.testing.assert_close(got["grad"], grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("form", ["out", "in"])
def test_wcl_swap_ddp_equals_single_process(ddp_run, form):
    cases, results = ddp_run
    case = cases[f"wcl_{form}"]
    v1 = torch.cat(case["v1"]).requires_grad_()
    v2 = torch.cat(case["v2"]).requires_grad_()
    y1, y2 = torch.cat(case["y1"]), torch.cat(case["y2"])
    full = reference_loss(v1, y2, TAU, form) + reference_loss(v2, y1, TAU, form)
    g1, g2 = torch.autograd.grad(full, (v1, v2))
    per_rank = [results[r][f"wcl_{form}"] for r in range(WORLD)]
    mean_loss = sum(res["loss"] for res in per_rank) / WORLD
    assert mean_loss.item() == pytest.approx(full.item(), abs=1e-10)
    for r in range(WORLD):
        torch.testing.assert_close(per_rank[r]["grad1"] / WORLD, _blocks(g1)[r], atol=1e-10, rtol=0)
        torch.testing.assert_close(per_rank[r]["grad2"] / WORLD, _blocks(g2)[r], atol=1e-10, rtol=0)


def test_distributed_helpers(ddp_run):
    _, results = ddp_run
    weights = torch.arange(WORLD * 2 * 3, dtype=torch.float32).view(-1, 3)
    for r in range(WORLD):
        h = results[r]
        assert (h["rank"], h["world"]) == (r, WORLD)
        hp = h["helpers"]
        torch.testing.assert_close(hp["gathered"], torch.tensor([[1.0] * 3] * 2 + [[2.0] * 3] * 2))
        # d/dx_r of sum_q sum(gathered * weights * (q + 1)) = (1 + 2) * weights[rank r block]
        torch.testing.assert_close(hp["grad"], 3 * weights[2 * r : 2 * r + 2])
        assert hp["ints"].tolist() == [0, 10, 1, 11]
        assert hp["summed"].tolist() == [2.0, 1.0]


def test_unequal_local_batches_raise_on_every_rank(ddp_run):
    _, results = ddp_run
    for r in range(WORLD):
        message = results[r]["unequal_rows_error"]
        assert message is not None and "same number of rows on every rank" in message
        assert "[3, 4]" in message
