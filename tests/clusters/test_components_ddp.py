"""WCL weak labels under DDP: 2 gloo processes give the single-process labels, on both ranks."""
import numpy as np
import torch

from clinfonce_plugin.clusters.components import weak_labels, weak_labels_of_views
from tests.ddp import run_ranks

WORLD_SIZE = 2


def _batches():
    """Fixed batches, rebuilt identically in every process.

    "ties": +-1 rows in D=6, 48 samples: exact, frequent similarity ties (also between
    rows that live on different ranks). "gauss": 64 unit Gaussian rows in D=16.
    """
    rng = np.random.default_rng(0)
    ties = torch.from_numpy(rng.choice([-1.0, 1.0], size=(48, 6)).astype(np.float32))
    g = torch.Generator().manual_seed(1)
    gauss = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    return {"ties": ties, "gauss": gauss}


def _second_view(batches):
    """A second 48-row view in D=6 for the multi-view call (other neighbours than ties')."""
    return torch.nn.functional.normalize(batches["gauss"][:48, :6], dim=1)


def _worker(rank: int) -> dict:
    results = {}
    for name, batch in _batches().items():
        n = batch.shape[0] // WORLD_SIZE
        rows = batch[rank * n : (rank + 1) * n]
        for backend in ("torch", "scipy"):
            # weak_labels gathers the rows itself ...
            results[(name, backend, "gather")] = weak_labels(rows, backend=backend)
            # ... or reuses a batch the caller gathered already for the loss
            results[(name, backend, "given")] = weak_labels(
                rows, v_all=batch, row_offset=rank * n, backend=backend
            )
    # two views labelled in one call: one gather of both views' neighbour lists
    batches = _batches()
    views = [batches["ties"], _second_view(batches)]
    n = views[0].shape[0] // WORLD_SIZE
    for backend in ("torch", "scipy"):
        results[("views", backend)] = weak_labels_of_views(
            [v[rank * n : (rank + 1) * n] for v in views], backend=backend)
    return results


def test_ddp_labels_equal_single_process():
    per_rank = run_ranks(_worker, world_size=WORLD_SIZE)
    batches = _batches()
    views = [weak_labels(batches["ties"]), weak_labels(_second_view(batches))]
    for backend in ("torch", "scipy"):
        for r in range(WORLD_SIZE):
            got = per_rank[r].pop(("views", backend))
            assert len(got) == 2 and all(torch.equal(g, e) for g, e in zip(got, views))
    for key, labels in per_rank[0].items():
        name = key[0]
        expected = weak_labels(batches[name])
        assert labels.shape == (batches[name].shape[0],)
        assert torch.equal(labels, expected), key
        assert torch.equal(per_rank[1][key], labels), key
    # the tie batch has non-trivial structure: more than one component, fewer than N / 2
    num = int(weak_labels(batches["ties"]).max()) + 1
    assert 1 < num <= 24
