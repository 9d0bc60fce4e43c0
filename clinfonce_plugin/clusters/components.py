"""Weak labels from connected components of the batch 1-nearest-neighbour graph.

Implements the weak-label generation of WCL (https://arxiv.org/abs/2110.04770), Sec. 3.3:
every sample links to its most cosine-similar other sample in the (gathered) batch, the
links are taken as undirected edges, and each connected component is one weak class.

Every node has exactly one out-edge, so the graph is a *functional graph*: each weakly
connected component is one cycle with in-trees hanging off it. ``components_torch``
uses that structure to label components exactly in at most ceil(log2 N) pointer-doubling
rounds plus one scatter, in torch on the tensor's device (CPU or accelerator); off the CPU
without any host synchronisation. ``components_scipy`` is the reference backend
(``scipy.sparse.csgraph.connected_components`` on the host).

Labels are canonical: a component is named by its smallest node index and the names are
then renumbered 0..C-1 in increasing order of that index. Both backends return the same
labels, so results compare with ``==``.

Plain torch + scipy: no host import.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from clinfonce_plugin.utils import devices
from clinfonce_plugin.utils.distributed import all_gather_no_grad, get_rank, is_dist
from clinfonce_plugin.utils.precision import autocast_off

__all__ = [
    "nearest_neighbour",
    "components_scipy",
    "components_torch",
    "weak_labels",
    "weak_labels_of_views",
    "component_stats",
    "component_statistics",
    "purity",
]

BACKENDS = ("torch", "scipy")

# similarity entries per chunk of rows: bounds the (rows x N) block to ~2^24 floats
_CHUNK_ELEMENTS = 1 << 24


@torch.no_grad()
def nearest_neighbour(v_rows: torch.Tensor, v_all: torch.Tensor, row_offset: int = 0
                      ) -> torch.Tensor:
    """Index in ``v_all`` of each row's most similar *other* sample (dot product).

    Args:
        v_rows: (n, D) L2-normalised embeddings of this rank's samples (normalised by the
            caller, so the dot product is the cosine similarity).
        v_all: (N, D) L2-normalised embeddings of the whole (gathered) batch; row i of
            ``v_rows`` is row ``row_offset + i`` of ``v_all``.
        row_offset: where this rank's block sits in ``v_all``.

    Returns:
        (n,) int64 on ``v_rows.device``. The sample itself is excluded; exact ties go to
        the smallest index. With N == 1 there is no other sample and the sample's own
        index is returned (a self-loop: its own component). Inputs must be finite.
    """
    if v_rows.ndim != 2 or v_all.ndim != 2:
        raise ValueError(
            f"v_rows and v_all must be 2-D (n, D) and (N, D), got {tuple(v_rows.shape)} "
            f"and {tuple(v_all.shape)}"
        )
    n, dim = v_rows.shape
    total = v_all.shape[0]
    if v_all.shape[1] != dim:
        raise ValueError(f"v_rows has D={dim} but v_all has D={v_all.shape[1]}")
    if n == 0:
        raise ValueError("v_rows is empty: need at least one sample")
    if not 0 <= row_offset <= total - n:
        raise ValueError(
            f"row_offset={row_offset} puts rows {row_offset}..{row_offset + n - 1} outside "
            f"v_all with N={total} rows"
        )
    device = v_rows.device
    self_idx = torch.arange(row_offset, row_offset + n, device=device)
    if total == 1:
        return self_idx
    v_all = v_all.to(device=device, dtype=v_rows.dtype)
    chunk = max(1, _CHUNK_ELEMENTS // total)
    out = []
    # in the rows' dtype: autocast's 16-bit products would change about 1 % of the 1-NNs
    with autocast_off(device.type):
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            sim = v_rows[start:stop] @ v_all.T
            # row i's own column is row_offset + start + i: a diagonal of the block
            sim.diagonal(row_offset + start).fill_(float("-inf"))
            # torch.argmax returns the first maximal index (documented, on every device):
            # exact ties go to the smallest index
            out.append(sim.argmax(dim=1))
    return out[0] if len(out) == 1 else torch.cat(out)


def _check_nn(nn_idx: torch.Tensor, validate: bool) -> None:
    if nn_idx.ndim != 1:
        raise ValueError(f"nn_idx must be 1-D (N,), got shape {tuple(nn_idx.shape)}")
    if nn_idx.numel() == 0:
        raise ValueError("nn_idx is empty: need at least one node")
    if nn_idx.dtype.is_floating_point or nn_idx.dtype == torch.bool or nn_idx.is_complex():
        raise ValueError(f"nn_idx must hold integer indices, got dtype {nn_idx.dtype}")
    if validate:
        n = nn_idx.numel()
        lo, hi = int(nn_idx.min()), int(nn_idx.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"nn_idx values must lie in [0, {n}), got min {lo}, max {hi}")


def components_torch(nn_idx: torch.Tensor, validate: bool = True,
                     max_size: Optional[int] = None) -> torch.Tensor:
    """Canonical connected-component labels of the undirected graph {i - nn_idx[i]}.

    Exact for any functional graph (any ``nn_idx`` with values in [0, N)):

    1. Pointer doubling, at most T = ceil(log2 N) rounds: ``m <- min(m, m[p])`` and
       ``p <- p[p]`` starting from ``p = nn_idx``, ``m = arange(N)``. After round t,
       ``p[i]`` is f^(2^t)(i) and ``m[i]`` the smallest node among i, f(i), ...,
       f^(2^t - 1)(i). Since tails are shorter than N and cycles at most N long, 2^T >= N
       puts every ``p[i]`` on its component's cycle and makes ``m`` at a cycle node the
       cycle's smallest node: ``rep = m[p]`` is one node shared by the whole component.
    2. ``first[rep[i]] = min i`` (scatter amin) is the smallest node of each component;
       ``label = first[rep]``.
    3. Roots (``label == arange``) are renumbered 0..C-1 by a cumulative sum.

    On an accelerator all T rounds run, so nothing is read back to the host. On the CPU,
    where reading a tensor costs nothing, the rounds stop early once ``p[p] == p``: then
    every ``p[i]`` is a fixed point of f^(2^t), i.e. on a cycle whose length divides 2^t,
    so ``m`` there already spans the whole cycle. A batch 1-NN graph (tails of a few nodes,
    2-cycles) needs about 3 rounds instead of ceil(log2 N). The argument holds with N
    replaced by any bound S on a component's size (tails are shorter than S, cycles at
    most S long): ``max_size`` = S runs ceil(log2 S) rounds (the disjoint union of V graphs
    of n nodes each: S = n).

    Args:
        nn_idx: (N,) integer tensor, nn_idx[i] = the node i links to.
        validate: check the value range (one host sync); callers that built nn_idx
            themselves pass False.
        max_size: a bound on the size of every component (default N); not checked.

    Returns:
        (N,) int64 labels on ``nn_idx.device``.
    """
    nn_idx = torch.as_tensor(nn_idx)
    _check_nn(nn_idx, validate)
    return _pointer_doubling(nn_idx, stop_early=devices.host_reads_free(nn_idx),
                             max_size=max_size)


@torch.no_grad()
def _pointer_doubling(nn_idx: torch.Tensor, stop_early: bool,
                      max_size: Optional[int] = None) -> torch.Tensor:
    """Steps 1-3 of :func:`components_torch`; ``stop_early`` ends the rounds once
    ``p[p] == p`` (one host read per round); ``max_size`` bounds a component's size."""
    n = nn_idx.numel()
    node = torch.arange(n, device=nn_idx.device)
    # rows (m, p) in one tensor: a round is one gather of both rows by p, giving
    # (m[p], p[p]), and one minimum in place (two ops per round, not three).
    # index_select rather than t[idx]: the same gather, without advanced indexing's
    # overhead (3x per call at N = 4096 on the CPU)
    state = torch.stack([node, nn_idx.long()])
    smallest, pointer = state.unbind()
    bound = n if max_size is None else min(n, max_size)
    for _ in range((bound - 1).bit_length()):  # ceil(log2 bound) for bound >= 1
        state = state.index_select(1, pointer)
        jumped_smallest, jumped = state.unbind()
        torch.minimum(jumped_smallest, smallest, out=jumped_smallest)
        done = stop_early and torch.equal(jumped, pointer)
        smallest, pointer = jumped_smallest, jumped
        if done:
            break
    rep = smallest.index_select(0, pointer)
    first = torch.full((n,), n, dtype=torch.long, device=nn_idx.device)
    first.scatter_reduce_(0, rep, node, reduce="amin")
    label = first.index_select(0, rep)
    rank = torch.cumsum(label == node, dim=0) - 1
    return rank.index_select(0, label)


def _canonical_numpy(labels: np.ndarray) -> np.ndarray:
    """Renames arbitrary component ids by first occurrence: 0..C-1 by smallest node."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    new_of_old = np.empty(first.size, dtype=np.int64)
    new_of_old[np.argsort(first)] = np.arange(first.size)
    return new_of_old[inverse.reshape(-1)]


def components_scipy(nn_idx: Union[torch.Tensor, np.ndarray]
                     ) -> Union[torch.Tensor, np.ndarray]:
    """Same labels as :func:`components_torch`, via ``scipy.sparse.csgraph``.

    Args:
        nn_idx: (N,) integer tensor or array.

    Returns:
        (N,) int64 labels; a tensor on ``nn_idx.device`` for a tensor input, else an array.
    """
    is_tensor = isinstance(nn_idx, torch.Tensor)
    tensor = nn_idx if is_tensor else torch.as_tensor(np.asarray(nn_idx))
    _check_nn(tensor, validate=True)
    idx = tensor.detach().cpu().numpy().astype(np.int64)
    n = idx.size
    graph = csr_matrix((np.ones(n, dtype=np.int8), (np.arange(n), idx)), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    labels = _canonical_numpy(raw)
    if is_tensor:
        return torch.from_numpy(labels).to(nn_idx.device)
    return labels


def weak_labels(v_rows: torch.Tensor, v_all: Optional[torch.Tensor] = None,
                row_offset: Optional[int] = None, backend: str = "torch",
                gather: bool = True) -> torch.Tensor:
    """WCL weak labels of the whole (gathered) batch, identical on every rank.

    Each rank finds the 1-NN of *its* rows against the gathered batch (an n x N block,
    never N x N), the ranks all-gather those N integers, and every rank labels the same
    full edge list locally. No rank broadcasts labels to the others.

    Args:
        v_rows: (n, D) L2-normalised embeddings of this rank's samples.
        v_all: (N, D) the gathered batch if the caller already has it (e.g. for the
            loss); None gathers ``v_rows`` (all ranks must then hold the same n).
        row_offset: position of this rank's rows in ``v_all``; None means
            ``rank * n`` when gathering (the all_gather layout) and 0 otherwise.
        backend: "torch" (on device) or "scipy" (host).
        gather: False treats the call as single-process even under DDP; then ``v_rows``
            must be the whole batch.

    Returns:
        (N,) int64 canonical component labels on ``v_rows.device``.
    """
    if v_rows.ndim != 2:
        raise ValueError(f"v_rows must be 2-D (n, D), got shape {tuple(v_rows.shape)}")
    return weak_labels_of_views([v_rows], None if v_all is None else [v_all], row_offset,
                                backend, gather)[0]


def weak_labels_of_views(views: Sequence[torch.Tensor],
                         gathered: Optional[Sequence[torch.Tensor]] = None,
                         row_offset: Optional[int] = None, backend: str = "torch",
                         gather: bool = True) -> List[torch.Tensor]:
    """:func:`weak_labels` of several views at once (WCL's y1, y2), identical on every rank.

    Each view keeps its own 1-NN graph (a (n, N) similarity per view), but the views'
    graphs are labelled as ONE disjoint union in a single call, and under DDP their
    neighbour lists are gathered in one collective: the fixed per-call cost of labelling
    (a few dozen small tensor ops) is paid once per step instead of once per view. The labels
    are those of separate calls: view i's nodes follow the earlier views' in the union, so
    its first node is the smallest of its component and gets label C_<i (the number of
    components of the earlier views); subtracting it restores the canonical 0..C_i - 1.

    Args:
        views: V tensors (n, D), L2-normalised embeddings of this rank's samples.
        gathered: the V gathered batches (N, D) if the caller has them; None gathers.
        row_offset, backend, gather: as in :func:`weak_labels`.

    Returns:
        V tensors (N,) int64 of canonical labels on the views' device.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}. Choose from {sorted(BACKENDS)}")
    if len(views) == 0:
        raise ValueError("views is empty: need at least one view")
    if gathered is not None and len(gathered) != len(views):
        raise ValueError(f"got {len(views)} views but {len(gathered)} gathered batches")
    shapes = {tuple(v.shape) for v in views}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"views must be 2-D (n, D) tensors of one shape, got {sorted(shapes)}")
    distributed = gather and is_dist()
    n = views[0].shape[0]
    if row_offset is None:
        row_offset = get_rank() * n if distributed else 0
    with torch.no_grad():
        local = []
        for i, v in enumerate(views):
            v = v.detach()
            v_all = gathered[i].detach() if gathered is not None else (
                all_gather_no_grad(v) if distributed else v)
            local.append(nearest_neighbour(v, v_all, row_offset))
        total = v_all.shape[0]
        # (V, n) per rank -> (world, V, n) -> (V, world * n): view-major, rank order inside
        nn = torch.stack(local)
        if distributed:
            nn = all_gather_no_grad(nn.unsqueeze(0)).transpose(0, 1).reshape(len(views), -1)
        if nn.shape[1] != total:
            raise ValueError(
                f"the neighbour lists cover {nn.shape[1]} samples but the gathered batch "
                f"has {total} rows: every sample must be a row on exactly one rank "
                "(single process: each view must be the whole batch)")
        union = nn + torch.arange(len(views), device=nn.device).unsqueeze(1) * total
        flat = union.reshape(-1)
        # no component spans two views: each has at most `total` nodes
        labels = components_torch(flat, validate=False, max_size=total) \
            if backend == "torch" else components_scipy(flat)
        labels = labels.view(len(views), total)
        return list(labels - labels[:, :1])


def component_statistics(labels: torch.Tensor, targets: Optional[torch.Tensor] = None
                         ) -> Dict[str, torch.Tensor]:
    """Statistics of a labelling as 0-d tensors on its device, with nothing read back to the
    host (the training step logs them every step): ``num_components``, ``mean_size``,
    ``max_size`` and, with ``targets``, ``purity`` (see :func:`purity`; NaN when no target
    is known).

    Args:
        labels: (N,) int64 labels in [0, N) (canonical labels are).
        targets: (N,) int64 targets, -1 where unknown.
    """
    n = labels.numel()
    sizes = torch.zeros(n, dtype=torch.long, device=labels.device).index_add_(
        0, labels, torch.ones_like(labels))
    num = (sizes > 0).sum()
    out = {"num_components": num, "mean_size": n / num.float(), "max_size": sizes.max()}
    if targets is not None:
        known = targets != -1
        # one key per (component, target); the rows sharing a row's key are counted in the
        # sorted keys by two binary searches (labels, targets + 1 < 2**31)
        key = labels * 2 ** 32 + (targets + 1)
        ordered = key.sort().values
        group = (torch.searchsorted(ordered, key, right=True)
                 - torch.searchsorted(ordered, key)) * known
        # a component's majority: its largest (component, known target) group
        majority = torch.zeros(n, dtype=torch.long, device=labels.device).scatter_reduce_(
            0, labels, group, reduce="amax")
        out["purity"] = majority.sum().float() / known.sum().float()
    return out


def mean_view_statistics(labels: Sequence[torch.Tensor],
                         targets: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """:func:`component_statistics` of V canonical labellings of the same N samples (WCL's
    views), averaged over the views, in one pass: ``num_components``, ``mean_size`` and,
    with ``targets``, ``purity`` (the mean of the views' purities: every view has the same
    known samples, so it is the purity of the V labellings taken as one). 0-d tensors,
    nothing read back to the host.

    Args:
        labels: V tensors (N,) of canonical labels 0..C_v - 1.
        targets: (N,) int64 targets, -1 where unknown.
    """
    stacked = torch.stack(list(labels))  # (V, N)
    views, n = stacked.shape
    # canonical labels: C_v = max + 1
    num = stacked.amax(dim=1) + 1
    out = {"num_components": num.float().mean(), "mean_size": (n / num.float()).mean()}
    if targets is not None:
        known = targets != -1
        # (view, component) made one id, then one key per (view, component, target) as in
        # component_statistics (ids < V * N, targets + 1 < 2**31)
        comp = stacked * views + torch.arange(views, device=stacked.device)[:, None]
        key = (comp * 2 ** 32 + (targets + 1)).reshape(-1)
        ordered = key.sort().values
        group = (torch.searchsorted(ordered, key, right=True)
                 - torch.searchsorted(ordered, key)) * known.repeat(views)
        majority = torch.zeros(views * n, dtype=torch.long, device=stacked.device
                               ).scatter_reduce_(0, comp.reshape(-1), group, reduce="amax")
        out["purity"] = majority.sum().float() / (views * known.sum()).float()
    return out


def _dense_labels(labels: torch.Tensor) -> torch.Tensor:
    """Any non-negative labels renamed 0..C-1 (host-side; fine outside the training step)."""
    return torch.unique(labels, return_inverse=True)[1].reshape(-1)


def component_stats(labels: torch.Tensor) -> Dict[str, float]:
    """Number of components, mean and largest component size of canonical labels.

    Args:
        labels: (N,) int labels in 0..C-1.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor, got {tuple(labels.shape)}")
    stats = component_statistics(_dense_labels(labels.long()))
    return {"num_components": int(stats["num_components"]),
            "mean_size": float(stats["mean_size"]), "max_size": int(stats["max_size"])}


def purity(labels: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of samples whose component's majority target equals their own target.

    Samples with target -1 (unknown) are ignored both in the majority vote and in the
    count. Equals sum over components of (largest target count) / (#known samples), so a
    tied majority gives the same value whichever target wins. NaN when no target is known.

    Args:
        labels: (N,) component labels (non-negative integers).
        targets: (N,) integer targets, -1 where unknown.
    """
    labels = torch.as_tensor(labels).long()
    targets = torch.as_tensor(targets).long().to(labels.device)
    if labels.ndim != 1 or labels.shape != targets.shape:
        raise ValueError(
            f"labels and targets must be 1-D of equal length, got {tuple(labels.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if labels.numel() == 0:
        return float("nan")
    return float(component_statistics(_dense_labels(labels), targets)["purity"])
