"""WCL weak labels: 1-NN search and connected components against slow references."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clinfonce_plugin.clusters.components as components
from clinfonce_plugin.clusters.components import (
    weak_labels_of_views,
    component_stats,
    component_statistics,
    mean_view_statistics,
    components_scipy,
    components_torch,
    nearest_neighbour,
    purity,
    weak_labels,
)

# --- independent references ------------------------------------------------------------


def reference_components(nn):
    """Union-find over the undirected edges i - nn[i]; canonical labels by smallest node."""
    nn = [int(x) for x in nn]
    parent = list(range(len(nn)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in enumerate(nn):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    names, out = {}, []
    for i in range(len(nn)):  # nodes in increasing order: first seen = smallest node
        out.append(names.setdefault(find(i), len(names)))
    return out


def reference_nn(v):
    """Loop 1-NN: largest dot product with another row, smallest index on exact ties."""
    n = len(v)
    if n == 1:
        return [0]
    out = []
    for i in range(n):
        best, best_j = -math.inf, None
        for j in range(n):
            if j == i:
                continue
            s = float(np.dot(v[i], v[j]))
            if s > best:  # strict: an equal later j never replaces the earlier one
                best, best_j = s, j
        out.append(best_j)
    return out


def sign_vectors(n, dim, seed):
    """Rows of +-1 (equal norms): dot products are small integers, exact in float32 in
    any summation order, so ties are exact and frequent."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=(n, dim)).astype(np.float32)


def unit_gaussian(n, dim, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)


# --- connected components --------------------------------------------------------------


def labels_both_kernels(nn):
    """components_torch (on the CPU: rounds stop once p[p] == p) after checking that the
    accelerator path (all ceil(log2 N) rounds, no host read), run here on the CPU, gives the
    same labels."""
    labels = components_torch(nn)
    idx = torch.as_tensor(nn)
    assert torch.equal(components._pointer_doubling(idx, stop_early=False), labels)
    return labels


def test_torch_kernel_matches_scipy_on_random_functional_graphs():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100, 1000):
        for _ in range(5):
            # arbitrary functional graphs: long cycles, self-loops, deep trees
            nn = torch.as_tensor(rng.integers(0, n, size=n))
            expected = components_scipy(nn)
            assert torch.equal(labels_both_kernels(nn), expected)


def test_cpu_rounds_stop_once_pointers_are_fixed(monkeypatch):
    # mutual pairs: round 1 makes p the identity (p[p] != p yet), round 2 finds p[p] == p,
    # so the CPU path compares twice and stops; the accelerator path runs all
    # ceil(log2 1024) = 10 rounds and never compares (no host read)
    nn = torch.arange(1024) ^ 1
    reads = []
    real_equal = torch.equal
    monkeypatch.setattr(components.torch, "equal",
                        lambda a, b: reads.append(1) or real_equal(a, b))
    assert components_torch(nn, validate=False).tolist() == torch.arange(1024).div(
        2, rounding_mode="floor").tolist()
    assert len(reads) == 2
    reads.clear()
    components._pointer_doubling(nn, stop_early=False)
    assert reads == []


def test_hand_built_graphs():
    # edges 0-1, 2-3, 4-2, 5-0: {0, 1, 5} and {2, 3, 4}
    nn = torch.tensor([1, 0, 3, 2, 2, 0])
    expected = torch.tensor([0, 0, 1, 1, 1, 0])
    assert torch.equal(components_torch(nn), expected)
    assert torch.equal(components_scipy(nn), expected)
    # edges 0-3, 1-3, 2-4, 5-6 (6-5 again): {0, 1, 3}, {2, 4}, {5, 6}
    nn = torch.tensor([3, 3, 4, 1, 2, 6, 5])
    expected = torch.tensor([0, 0, 1, 0, 1, 2, 2])
    assert torch.equal(components_torch(nn), expected)
    assert torch.equal(components_scipy(nn), expected)


def test_edges_are_undirected():
    # 0 -> 1 -> 2 -> 2 (self loop) and 3 -> 2: one component although only 2 is a sink
    nn = torch.tensor([1, 2, 2, 2])
    assert components_torch(nn).tolist() == [0, 0, 0, 0]
    # mutual pairs i <-> i^1 form 2-cycles: one component per pair
    nn = torch.arange(10) ^ 1
    assert components_torch(nn).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert components_scipy(nn).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_labels_are_numbered_by_smallest_node():
    # components {0, 4}, {1, 3}, {2}: named 0, 1, 2 in order of their smallest node
    nn = torch.tensor([4, 3, 2, 1, 0])
    assert components_torch(nn).tolist() == [0, 1, 2, 1, 0]
    assert components_scipy(nn.numpy()).tolist() == [0, 1, 2, 1, 0]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 257, 500])
def test_one_big_component(n):
    # a long cycle (worst case for label propagation along the cycle)
    cycle = torch.roll(torch.arange(n), -1)
    assert labels_both_kernels(cycle).tolist() == [0] * n
    assert components_scipy(cycle).tolist() == [0] * n
    # a long chain into a 2-cycle at the end: the tail is n - 2 deep
    chain = torch.arange(1, n + 1).clamp(max=n - 1)
    if n >= 2:
        chain[n - 1] = n - 2
    assert labels_both_kernels(chain).tolist() == [0] * n
    # a star: everyone points to the last node, which points to node 0
    star = torch.full((n,), n - 1)
    star[n - 1] = 0
    assert labels_both_kernels(star).tolist() == [0] * n
    assert components_scipy(star).tolist() == [0] * n


def test_canonical_renaming_of_arbitrary_ids():
    # whatever ids a labelling library hands out, components are renamed 0..C-1 in
    # order of their smallest node: ids 2, 2, 0, 1, 0 -> 0, 0, 1, 2, 1
    out = components._canonical_numpy(np.array([2, 2, 0, 1, 0]))
    assert out.tolist() == [0, 0, 1, 2, 1]


def test_single_node():
    assert components_torch(torch.tensor([0])).tolist() == [0]
    assert components_scipy(np.array([0])).tolist() == [0]


@pytest.mark.parametrize("seed", range(40))
def test_backends_agree_on_random_functional_graphs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 501))
    if seed % 2:
        nn = rng.integers(0, n, size=n)  # any functional graph, self loops included
    else:
        # 1-NN-like: no self loop (except N = 1), many in-trees
        nn = (np.arange(n) + rng.integers(1, max(n, 2), size=n)) % n if n > 1 else np.zeros(1)
    nn = torch.as_tensor(nn, dtype=torch.int64)
    expected = reference_components(nn.tolist())
    torch_labels = labels_both_kernels(nn)
    scipy_labels = components_scipy(nn)
    assert torch_labels.dtype == torch.int64
    assert torch_labels.tolist() == expected
    assert torch.equal(torch_labels, scipy_labels)


def test_deep_random_trees():
    # long random tails: node i links to a random node of smaller index, root 0 <-> 1
    rng = np.random.default_rng(11)
    n = 400
    nn = np.array([1, 0] + [int(rng.integers(max(0, i - 3), i)) for i in range(2, n)])
    labels = labels_both_kernels(torch.as_tensor(nn))
    assert labels.tolist() == reference_components(nn) == [0] * n


def test_components_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        components_torch(torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        components_scipy(np.array([0, -1, 2]))
    with pytest.raises(ValueError, match="integer"):
        components_torch(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        components_torch(torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match="1-D"):
        components_scipy(torch.zeros(2, 2, dtype=torch.int64))


# --- nearest neighbour -----------------------------------------------------------------


def test_nearest_neighbour_duplicates_by_hand():
    # rows: e0, e0, e1, e0 (one-hot)
    # 0: similarity 1 with rows 1 and 3 -> smallest index 1
    # 1: similarity 1 with rows 0 and 3 -> 0
    # 2: similarity 0 with everyone   -> smallest other index 0
    # 3: similarity 1 with rows 0 and 1 -> 0
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert nearest_neighbour(v, v).tolist() == [1, 0, 0, 0]
    # edges 0-1, 1-0, 2-0, 3-0: one component
    assert weak_labels(v).tolist() == [0, 0, 0, 0]
    # all rows identical: everyone ties with everyone -> 1, 0, 0, 0
    same = torch.ones(4, 3) / math.sqrt(3)
    assert nearest_neighbour(same, same).tolist() == [1, 0, 0, 0]


@pytest.mark.parametrize("n, dim, seed", [(2, 4, 0), (9, 4, 1), (40, 6, 2), (97, 8, 3)])
def test_nearest_neighbour_exact_ties_match_reference(n, dim, seed):
    v = sign_vectors(n, dim, seed)
    expected = reference_nn(v)
    vt = torch.from_numpy(v)
    assert nearest_neighbour(vt, vt).tolist() == expected
    # row blocks at their offsets give the same answer (the distributed recipe)
    for start, stop in [(0, n // 2), (n // 2, n), (n // 3, n // 3 + 1)]:
        if stop > start:
            got = nearest_neighbour(vt[start:stop], vt, row_offset=start)
            assert got.tolist() == expected[start:stop]


def test_nearest_neighbour_chunked_rows(monkeypatch):
    # force one row per chunk: the chunk loop must give the same answer
    v = torch.from_numpy(sign_vectors(33, 5, 4))
    whole = nearest_neighbour(v, v)
    monkeypatch.setattr(components, "_CHUNK_ELEMENTS", 1)
    assert torch.equal(nearest_neighbour(v, v), whole)
    assert whole.tolist() == reference_nn(v.numpy())


def test_nearest_neighbour_gaussian_matches_float64_reference():
    v = unit_gaussian(150, 16, seed=5)
    sim = v.double() @ v.double().T
    sim.fill_diagonal_(-math.inf)
    assert torch.equal(nearest_neighbour(v, v), sim.argmax(dim=1))


def test_nearest_neighbour_single_sample_is_itself():
    v = torch.tensor([[0.6, 0.8]])
    assert nearest_neighbour(v, v).tolist() == [0]
    assert weak_labels(v).tolist() == [0]


def test_nearest_neighbour_no_grad():
    v = unit_gaussian(8, 4, seed=0).requires_grad_(True)
    out = nearest_neighbour(v, v)
    assert out.dtype == torch.int64 and out.grad_fn is None
    labels = weak_labels(v)
    assert labels.grad_fn is None


def test_nearest_neighbour_bad_input():
    v = torch.randn(4, 3)
    with pytest.raises(ValueError, match="D=3"):
        nearest_neighbour(v, torch.randn(4, 5))
    with pytest.raises(ValueError, match="row_offset"):
        nearest_neighbour(v[:2], v, row_offset=3)
    with pytest.raises(ValueError, match="2-D"):
        nearest_neighbour(v[0], v)


# --- weak labels -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_weak_labels_match_reference_and_agree_across_backends(seed):
    v = sign_vectors(60, 6, seed)
    expected = reference_components(reference_nn(v))
    vt = torch.from_numpy(v)
    assert weak_labels(vt, backend="torch").tolist() == expected
    assert weak_labels(vt, backend="scipy").tolist() == expected
    # v_all passed explicitly, and gather=False, change nothing in one process
    assert weak_labels(vt, v_all=vt, row_offset=0, gather=False).tolist() == expected


def test_weak_labels_deterministic():
    v = unit_gaussian(200, 8, seed=3)
    first = weak_labels(v)
    for _ in range(3):
        assert torch.equal(weak_labels(v), first)
    assert torch.equal(weak_labels(v, backend="scipy"), first)


def test_weak_labels_mutual_pairs():
    # two tight, well separated pairs -> two components {0, 2}, {1, 3}
    v = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.05], [0.05, 1.0]]), dim=1
    )
    assert nearest_neighbour(v, v).tolist() == [2, 3, 0, 1]
    assert weak_labels(v).tolist() == [0, 1, 0, 1]


def test_weak_labels_bad_input():
    v = torch.randn(6, 3)
    with pytest.raises(ValueError, match="unknown backend 'networkx'"):
        weak_labels(v, backend="networkx")
    # only half of the batch as rows in a single process: the edge list is incomplete
    with pytest.raises(ValueError, match="whole batch"):
        weak_labels(v[:3], v_all=v)


# --- stats -----------------------------------------------------------------------------


def test_component_stats():
    labels = torch.tensor([0, 0, 1, 0, 2, 2])
    stats = component_stats(labels)
    assert stats == {"num_components": 3, "mean_size": 2.0, "max_size": 3}


def test_purity_by_hand():
    # component 0: targets 5, 5, 7 -> majority 5, 2 of 3 agree
    # component 1: targets 7, -1   -> the -1 is ignored, 1 of 1 agrees
    # component 2: targets 1, 2    -> tied majority, 1 of 2 agrees
    # purity = (2 + 1 + 1) / 6 known samples
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    targets = torch.tensor([5, 5, 7, 7, -1, 1, 2])
    assert purity(labels, targets) == pytest.approx(4 / 6)
    assert purity(labels, torch.tensor([3, 3, 3, 4, 4, 9, 9])) == 1.0
    assert math.isnan(purity(labels, torch.full((7,), -1)))
    with pytest.raises(ValueError, match="equal length"):
        purity(labels, targets[:3])


def _loop_purity(labels, targets):
    """Purity by a loop over the clusters: the reference of the tests below."""
    correct = known = 0
    for c in np.unique(labels):
        t = targets[(labels == c) & (targets != -1)]
        if t.size:
            correct += np.bincount(t).max()
            known += t.size
    return correct / known


def test_purity_against_loop():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 12, 300)
    targets = rng.integers(-1, 5, 300)
    assert purity(torch.as_tensor(labels), torch.as_tensor(targets)) == pytest.approx(
        _loop_purity(labels, targets))


@pytest.mark.parametrize("backend", ["torch", "scipy"])
@pytest.mark.parametrize("num_views", [1, 2, 3])
def test_weak_labels_of_views_equal_each_views_own_components(backend, num_views):
    g = torch.Generator().manual_seed(7 + num_views)
    views = [F.normalize(torch.randn(40, 5, generator=g), dim=1) for _ in range(num_views)]
    got = weak_labels_of_views(views, backend=backend)
    assert len(got) == num_views
    for v, labels in zip(views, got):
        # reference: scipy's components of this view's own 1-NN graph (canonical ids)
        expected = components_scipy(nearest_neighbour(v, v))
        assert torch.equal(labels, expected)
        # each view's labels are canonical on their own: 0..C-1, first node labelled 0
        assert int(labels[0]) == 0 and int(labels.max()) + 1 == labels.unique().numel()
    # the views' graphs differ, so an offset mix-up between views could not pass
    assert num_views == 1 or not all(torch.equal(got[0], y) for y in got[1:])


def test_weak_labels_of_views_bad_input():
    v = F.normalize(torch.randn(8, 4), dim=1)
    with pytest.raises(ValueError, match="one shape"):
        weak_labels_of_views([v, v[:6]])
    with pytest.raises(ValueError, match="empty"):
        weak_labels_of_views([])
    with pytest.raises(ValueError, match="gathered"):
        weak_labels_of_views([v, v], gathered=[v])
    with pytest.raises(ValueError, match="unknown backend"):
        weak_labels_of_views([v], backend="cuda-magic")


def test_component_statistics_on_the_device_path_equal_the_loop_reference():
    # the training step's version: 0-d tensors, nothing read back; canonical labels
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 40, 257)
    labels = torch.as_tensor(np.unique(raw, return_inverse=True)[1].reshape(-1))
    targets = torch.as_tensor(rng.integers(-1, 6, 257))
    stats = component_statistics(labels, targets)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in stats.values())
    sizes = np.bincount(labels.numpy())
    assert int(stats["num_components"]) == sizes.size
    assert float(stats["mean_size"]) == pytest.approx(257 / sizes.size)
    assert int(stats["max_size"]) == sizes.max()
    assert float(stats["purity"]) == pytest.approx(_loop_purity(labels.numpy(), targets.numpy()))
    assert math.isnan(float(component_statistics(labels, torch.full((257,), -1))["purity"]))


@pytest.mark.parametrize("num_views", [1, 2, 3])
def test_mean_view_statistics_equal_the_mean_of_each_views(num_views):
    # WCL logs the mean over its two views; the one-pass version equals the former
    # per-view calls averaged, and the loop references
    rng = np.random.default_rng(11 + num_views)
    n = 200
    labels = [torch.as_tensor(np.unique(rng.integers(0, k, n), return_inverse=True)[1]
                              .reshape(-1)) for k in (30, 7, 60)[:num_views]]
    targets = torch.as_tensor(rng.integers(-1, 5, n))
    got = mean_view_statistics(labels, targets)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in got.values())
    each = [component_statistics(y, targets) for y in labels]
    for key in ("num_components", "mean_size", "purity"):
        old = sum(s[key] for s in each) / num_views
        assert float(got[key]) == pytest.approx(float(old), rel=1e-6), key
    sizes = [np.bincount(y.numpy()).size for y in labels]
    assert float(got["num_components"]) == pytest.approx(np.mean(sizes))
    assert float(got["mean_size"]) == pytest.approx(np.mean([n / c for c in sizes]))
    assert float(got["purity"]) == pytest.approx(
        np.mean([_loop_purity(y.numpy(), targets.numpy()) for y in labels]))
    assert "purity" not in mean_view_statistics(labels)
    assert math.isnan(float(mean_view_statistics(labels, torch.full((n,), -1))["purity"]))


def test_rounds_bounded_by_the_component_size_on_a_union_of_graphs():
    # V graphs of n nodes each as one disjoint union (weak_labels_of_views): ceil(log2 n)
    # rounds suffice; a single n-cycle per graph needs all of them
    rng = np.random.default_rng(4)
    n = 37
    graphs = [np.roll(np.arange(n), 1)] + [rng.integers(0, n, n) for _ in range(2)]
    union = torch.as_tensor(np.concatenate([g + v * n for v, g in enumerate(graphs)]))
    expected = components_scipy(union)
    assert torch.equal(components._pointer_doubling(union, False, max_size=n), expected)
    assert torch.equal(components_torch(union, max_size=n), expected)
    # a bound below the largest component is wrong (the test can tell)
    assert not torch.equal(components._pointer_doubling(union, False, max_size=16), expected)


def test_accelerator_rounds_gather_once_per_round(monkeypatch):
    # each round is one gather of (m, p) and one minimum: ceil(log2 n) gathers, plus the
    # three of the labelling (rep, label, rank)
    calls = []
    real = torch.Tensor.index_select
    monkeypatch.setattr(torch.Tensor, "index_select",
                        lambda self, *a: calls.append(1) or real(self, *a))
    nn = torch.as_tensor(np.random.default_rng(0).integers(0, 300, 300))
    labels = components._pointer_doubling(nn, stop_early=False)
    assert torch.equal(labels, components_scipy(nn))
    assert len(calls) == (300 - 1).bit_length() + 3
