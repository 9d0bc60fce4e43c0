"""Two gloo processes: proto_nce per rank (each rank its rows, the prototype columns drawn from
the gathered ids with equal generators) averages to the single-process loss on the
concatenated batch, and its gradients are the single-process ones times the world size."""
import pytest
import torch

from clinfonce_plugin.losses import proto_nce
from tests.ddp import run_ranks
from tests.losses.test_proto_nce import reference

WORLD = 2
ROWS = 6  # per rank (3 images x 2 views)
K = 12


def make_cases():
    g = torch.Generator().manual_seed(0)
    prototypes = torch.randn(K, 4, generator=g, dtype=torch.float64)
    phi = 0.05 + 0.3 * torch.rand(K, generator=g, dtype=torch.float64)
    cases = {}
    # the ranks' clusters are disjoint: a rank drawing columns from its own ids only would
    # miss the other rank's clusters in its softmax
    ids = [torch.tensor([0, 1, 1, 0, 1, 1]), torch.tensor([2, 3, 4, 2, 3, 4])]
    for r in (None, 0, 3, 100):
        z = torch.randn(WORLD * ROWS, 4, generator=g, dtype=torch.float64)
        cases[f"r{r}"] = dict(z=list(z.chunk(WORLD)), ids=ids, r=r)
    return prototypes, phi, cases


def _worker(rank, prototypes, phi, cases):
    results = {}
    for name, case in cases.items():
        z = case["z"][rank].clone().requires_grad_()
        loss = proto_nce(z, case["ids"][rank], prototypes, phi, case["r"],
                         torch.Generator().manual_seed(7))
        loss.backward()
        results[name] = dict(loss=loss.detach(), grad=z.grad)
    try:  # unequal local batches must fail on every rank, not hang
        n = 3 + rank
        proto_nce(torch.randn(n, 4), torch.zeros(n, dtype=torch.long), prototypes, phi)
        results["unequal_rows_error"] = None
    except ValueError as err:
        results["unequal_rows_error"] = str(err)
    return results


@pytest.fixture(scope="module")
def ddp_run():
    prototypes, phi, cases = make_cases()
    return prototypes, phi, cases, run_ranks(_worker, prototypes, phi, cases, world_size=WORLD)


@pytest.mark.parametrize("name", ["rNone", "r0", "r3", "r100"])
def test_proto_nce_ddp_equals_single_process(ddp_run, name):
    prototypes, phi, cases, results = ddp_run
    case = cases[name]
    z_all = torch.cat(case["z"]).requires_grad_()
    ids_all = torch.cat(case["ids"])
    full = proto_nce(z_all, ids_all, prototypes, phi, case["r"], torch.Generator().manual_seed(7))
    (grad_full,) = torch.autograd.grad(full, z_all)
    if case["r"] == 0:  # the columns are exactly the batch's clusters: checked by the loop
        assert full.item() == pytest.approx(
            reference(z_all.detach(), ids_all, prototypes, phi, [0, 1, 2, 3, 4]), abs=1e-10)
    per_rank = [results[r][name] for r in range(WORLD)]
    mean_loss = sum(res["loss"] for res in per_rank) / WORLD
    assert mean_loss.item() == pytest.approx(full.item(), abs=1e-10)
    for r, g_full in enumerate(grad_full.chunk(WORLD)):
        torch.testing.assert_close(per_rank[r]["grad"] / WORLD, g_full, atol=1e-10, rtol=0)


def test_unequal_local_batches_raise_on_every_rank(ddp_run):
    *_, results = ddp_run
    for r in range(WORLD):
        message = results[r]["unequal_rows_error"]
        assert message is not None and "same number of rows on every rank" in message
        assert "[3, 4]" in message
