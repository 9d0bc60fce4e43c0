"""K-NN table of the KNN multi-crop: faiss and torch backends against a loop reference, a
constructed case with known neighbours, duplicates, and bad input."""
import math

import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.neighbours import drop_self, knn_table


def reference_knn(features: torch.Tensor, k: int):
    """Loop reference: cosine similarity to every other row, sorted descending."""
    x = features.double()
    out = []
    for i in range(x.shape[0]):
        sims = []
        for j in range(x.shape[0]):
            if j != i:
                cos = float(x[i] @ x[j]) / (float(x[i].norm()) * float(x[j].norm()))
                sims.append((-cos, j))
        out.append([j for _, j in sorted(sims)[:k]])
    return out


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("n,d,k", [(20, 4, 1), (37, 8, 5), (64, 3, 7)])
def test_matches_loop_reference(backend, n, d, k):
    g = torch.Generator().manual_seed(n * 100 + d)
    # scaled rows: only the direction matters
    feats = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g).add(0.5) * 3
    table = knn_table(feats, k, backend=backend)
    assert table.shape == (n, k) and table.dtype == torch.int64
    assert table.tolist() == reference_knn(feats, k)


def test_constructed_circle():
    # 12 points on a circle at angles 30 deg * i: the two nearest of i are i - 1 and i + 1
    # (equal similarity: either order), the next two i - 2 and i + 2
    angles = torch.arange(12, dtype=torch.float64) * (2 * math.pi / 12)
    feats = torch.stack([angles.cos(), angles.sin()], dim=1).float()
    for backend in ("faiss", "torch"):
        table = knn_table(feats, 4, backend=backend)
        for i in range(12):
            assert set(table[i, :2].tolist()) == {(i - 1) % 12, (i + 1) % 12}
            assert set(table[i, 2:].tolist()) == {(i - 2) % 12, (i + 2) % 12}


def test_self_is_excluded_among_duplicates():
    # rows 0, 1, 2 identical; rows 3, 4 identical and orthogonal to them
    feats = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2 + [[1.0, 1.0]])
    for backend in ("faiss", "torch"):
        table = knn_table(feats, 2, backend=backend)
        for i in range(3):
            assert set(table[i].tolist()) == {0, 1, 2} - {i}
        assert table[3, 0].item() == 4 and table[4, 0].item() == 3
        assert all(i not in table[i].tolist() for i in range(6))


def test_drop_self_keeps_order_and_drops_last_when_self_absent():
    cand = torch.tensor([[0, 5, 6], [7, 1, 8], [3, 4, 9]])
    assert drop_self(cand, 2).tolist() == [[5, 6], [7, 8], [3, 4]]
    cand = torch.tensor([[10, 11, 12]])
    assert drop_self(cand, 2, row_ids=torch.tensor([12])).tolist() == [[10, 11]]


def test_bad_input_is_a_clear_error():
    feats = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k=5 neighbours need at least k \\+ 1 = 6 samples"):
        knn_table(feats, 5)
    with pytest.raises(ValueError, match="unknown backend 'annoy'. Choose from"):
        knn_table(feats, 2, backend="annoy")
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        knn_table(feats, 0)
    with pytest.raises(ValueError, match="2-D tensor"):
        knn_table(torch.randn(5), 1)
    bad = feats.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        knn_table(bad, 1)
    with pytest.raises(ValueError, match="candidates must be"):
        drop_self(torch.zeros(3, 2, dtype=torch.long), 2)


def test_faiss_and_torch_agree_on_larger_random_set():
    rng = np.random.default_rng(3)
    feats = torch.from_numpy(rng.standard_normal((500, 32)).astype(np.float32))
    a, b = knn_table(feats, 5, "faiss"), knn_table(feats, 5, "torch")
    # compared through the similarities they reach: robust to float near-ties
    x = torch.nn.functional.normalize(feats.double(), dim=1)
    sim = x @ x.T
    assert torch.allclose(sim.gather(1, a), sim.gather(1, b), atol=1e-6)
    assert (a == b).float().mean() > 0.99
