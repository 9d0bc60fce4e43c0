"""Cluster-aware InfoNCE: positives are all other views whose cluster id equals the anchor's."""
import contextlib
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from clinfonce_plugin.utils import devices
from clinfonce_plugin.utils.distributed import (
    all_gather_no_grad,
    gather_with_grad,
    get_rank,
    get_world_size,
    is_dist,
)

FORMS = ("out", "in")
# Largest 2/tau for which exp(-2/tau) stays a normal number (with a margin).
_CONST_SHIFT_LIMIT = {torch.float32: 80.0, torch.float64: 700.0}


def _check_inputs(
    z: torch.Tensor,
    ids: torch.Tensor,
    temperature: float,
    form: str,
    num_clusters: Optional[int],
) -> None:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
        raise ValueError(f"Illegal temperature: {temperature!r}; expected a number > 0")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"Illegal temperature: {temperature}; expected a finite number > 0")
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}. Choose from {sorted(FORMS)}")
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a 2-D tensor (M, D), got {shape}")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a 1-D tensor (M,), got {shape}")
    if ids.shape[0] != z.shape[0]:
        raise ValueError(
            f"ids has {ids.shape[0]} entries but z has {z.shape[0]} rows; expected one "
            "cluster id per row of z (pass ids.repeat(n_views) for view-major z)"
        )
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor, got dtype {ids.dtype}")
    if num_clusters is not None and (
        not isinstance(num_clusters, int) or isinstance(num_clusters, bool) or num_clusters < 1
    ):
        raise ValueError(f"num_clusters must be None or an int >= 1, got {num_clusters!r}")


def _check_gathered(z: torch.Tensor, ids: torch.Tensor,
                    gathered: Tuple[torch.Tensor, torch.Tensor], n: int, offset: int) -> None:
    all_z, all_ids = gathered
    if tuple(all_z.shape) != (n, z.shape[1]) or tuple(all_ids.shape) != (n,):
        raise ValueError(f"gathered must be ((N, D), (N,)) with N = {n}, got "
                         f"{tuple(all_z.shape)} and {tuple(all_ids.shape)}")
    mine = ids.to(all_ids.device).long() == all_ids[offset:offset + z.shape[0]].long()
    if devices.host_reads_free(all_ids):
        if not bool(mine.all()):
            raise ValueError("ids must be this rank's block of the gathered ids")
    else:  # checked on the device: a host read would stall its queue every step
        torch._assert_async(mine.all(), "cl_infonce: ids must be this rank's block of the "
                                        "gathered ids")


def cl_infonce(
    z: torch.Tensor,
    ids: torch.Tensor,
    temperature: float = 0.1,
    form: str = "out",
    num_clusters: Optional[int] = None,
    gather: bool = True,
    gathered: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
) -> torch.Tensor:
    """Implements Cl-InfoNCE (https://arxiv.org/abs/2202.06670).

    With ``z`` L2-normalised, ``s_aj = z_a . z_j / tau``, gathered batch of N rows,
    ``P(a) = {j != a : ids_j == ids_a}``:

    - ``form="out"`` (official Cl-InfoNCE, SupCon's L_out)::

        l_a = -(1 / |P(a)|) sum_{p in P(a)} s_ap + log sum_{j != a} exp(s_aj)

    - ``form="in"`` (solo-learn's simclr / supcon loss)::

        l_a = -log( sum_{p in P(a)} exp(s_ap) / sum_{j != a} exp(s_aj) )

    Anchors without a positive are left out; the loss is the mean of ``l_a`` over the
    remaining anchors of the gathered batch. With instance ids and two views both forms
    are SimCLR's NT-Xent.

    Under DDP (``gather=True``) each rank's anchors are its own rows, contrasted against
    all ranks' rows (gathered with gradient); the returned value is
    ``sum of local l_a * world_size / global number of valid anchors``, so that the
    average over ranks, and DDP's averaged gradients, equal the single-process loss on
    the concatenated batch. All ranks must pass the same number of rows.

    Cost is that of NT-Xent: one (M, N) similarity and its log-partition; the positive
    terms use per-cluster sums (no (N, N) mask is built). The arithmetic runs in at least
    float32, also under autocast (which would otherwise run the similarity GEMM in 16 bits).

    Args:
        z: (M, D) this rank's embeddings, all views stacked (M = views * local batch);
            need not be normalised.
        ids: (M,) integer cluster id of each row (e.g. ``ids.repeat(n_views)``); >= 0 and
            the same id space on every rank.
        temperature: tau > 0.
        form: ``"out"`` or ``"in"``.
        num_clusters: if given, ids must already be contiguous in [0, num_clusters); saves
            the ``torch.unique`` remapping.
        gather: contrast against all ranks' rows when torch.distributed is initialised.
        gathered: ``(all_z, all_ids)``, the whole batch when the caller has gathered it
            already (one gather shared by several losses): all_z (N, D) with the gradient
            path to this rank's rows (``gather_with_grad(z)``), all_ids (N,); ``z`` and
            ``ids`` are this rank's block of them (rows ``rank * M`` on). No collective runs;
            the anchors are that block of ``all_z`` (z's values, its gradient reaching z
            through the gather), so ``z`` serves only the shape checks.

    Returns:
        Scalar loss (float32 or float64). 0 connected to ``z``'s graph when no anchor has
        a positive.
    """
    return cl_infonce_groups([z], [ids], temperature, form, [num_clusters], gather,
                             None if gathered is None else [gathered])


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    # one group: a view, not a copy (no extra kernel for the common case)
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(list(tensors))


def cl_infonce_groups(
    zs: Sequence[torch.Tensor],
    ids: Sequence[torch.Tensor],
    temperature: float = 0.1,
    form: str = "out",
    num_clusters: Optional[Sequence[Optional[int]]] = None,
    gather: bool = True,
    gathered: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None,
) -> torch.Tensor:
    """``sum_g cl_infonce(zs[g], ids[g], temperature, form, num_clusters[g], gather,
    gathered[g])`` computed in one batched pass: G independent contrasts of the same shape
    (each group its own anchors, keys and cluster ids; nothing is contrasted across groups)
    share every kernel launch, e.g. WCL's two within-view terms ``L_sup(V1, y2) +
    L_sup(V2, y1)``. Each group's value and gradient are those of ``cl_infonce`` (see there
    for the arguments; here each is a sequence with one entry per group).
    """
    zs, ids = list(zs), list(ids)
    groups = len(zs)
    if groups == 0 or len(ids) != groups:
        raise ValueError(f"cl_infonce_groups needs one ids tensor per group, got {groups} "
                         f"embedding and {len(ids)} id tensors")
    ks = [None] * groups if num_clusters is None else list(num_clusters)
    if len(ks) != groups or (gathered is not None and len(gathered) != groups):
        raise ValueError("num_clusters and gathered need one entry per group")
    for z, i, k in zip(zs, ids, ks):
        _check_inputs(z, i, temperature, form, k)
    if any(z.shape != zs[0].shape for z in zs):
        raise ValueError(f"every group needs the same (M, D), got "
                         f"{[tuple(z.shape) for z in zs]}")
    z0 = zs[0]
    m = z0.shape[0]
    distributed = (gather or gathered is not None) and is_dist() and get_world_size() > 1
    world = get_world_size() if distributed else 1
    rank = get_rank() if distributed else 0
    if gathered is not None:
        for z, i, g in zip(zs, ids, gathered):
            _check_gathered(z, i, g, world * m, rank * m)
    elif distributed:
        sizes = all_gather_no_grad(torch.tensor([m], device=z0.device))
        if bool((sizes != m).any()):
            raise ValueError(
                f"cl_infonce(gather=True) needs the same number of rows on every rank, got "
                f"{sizes.tolist()} (rank {rank}); pad the batch or use drop_last=True"
            )
    n = world * m
    if n < 2:  # nothing to contrast against
        return sum(z.sum() for z in zs) * 0

    # Half precision cannot hold exp/log-sum-exp over large batches reliably.
    work_dtype = torch.promote_types(z0.dtype, torch.float32)
    offset = rank * m  # where this rank's block sits in the gathered batch
    if gathered is not None:
        all_z = F.normalize(_stack([g[0] for g in gathered]).to(work_dtype), dim=-1)
        # this rank's rows hold z's values: the anchors are taken from the normalised
        # gathered rows (one normalisation per step, and the gradient reaches z through
        # the gather's backward, which hands each rank its block)
        zn = all_z[:, offset : offset + m]
        all_ids = [g[1].to(device=z0.device, dtype=torch.long) for g in gathered]
    else:
        zn = F.normalize(_stack(zs).to(work_dtype), dim=-1)
        all_z = _stack([gather_with_grad(x) for x in zn]) if distributed else zn
        local = [i.to(device=z0.device, dtype=torch.long) for i in ids]
        all_ids = [all_gather_no_grad(i) for i in local] if distributed else local
    inv, k = _contiguous_ids(all_ids, ks)  # (G, N), ids of group g in [g * k, (g + 1) * k)
    with _without_autocast(z0.device.type):
        return _contrast(zn, all_z, inv, groups * k, offset, world, temperature, form)


def _without_autocast(device_type: str):
    """A block where autocast is off on ``device_type`` (a no-op for a device autocast does
    not know, e.g. ``meta``)."""
    available = getattr(torch.amp, "is_autocast_available", lambda t: t in ("cpu", "cuda"))
    if available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _contiguous_ids(all_ids: List[torch.Tensor],
                    ks: List[Optional[int]]) -> Tuple[torch.Tensor, int]:
    """(G, N) ids, group g's in [g * k, (g + 1) * k), and k: each group's ids remapped to
    0..k_g-1 (``torch.unique``) where its cluster count is not given, else range-checked."""
    inv, counts = [], []
    for g, (a, k) in enumerate(zip(all_ids, ks)):
        if k is None:
            uniq, a = torch.unique(a, return_inverse=True)
            k = uniq.numel()
            if bool(uniq[0] < 0):
                raise ValueError(f"ids must be >= 0, got min id {int(uniq[0])}")
        elif devices.host_reads_free(a):
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi >= k:
                raise ValueError(
                    f"ids must lie in [0, num_clusters={k}), got range [{lo}, {hi}]"
                    + (f" (group {g})" if len(ks) > 1 else ""))
        inv.append(a)
        counts.append(k)
    stacked = _stack(inv)
    # on an accelerator a host read would stall its queue every step: the device checks the
    # range itself (one check for all groups) and fails the step's next synchronisation
    checked = [g for g, (a, k) in enumerate(zip(all_ids, ks))
               if k is not None and not devices.host_reads_free(a)]
    if checked:
        bounds = [counts[g] for g in checked]
        rows = stacked if len(checked) == len(ks) else stacked[checked]
        bound = bounds[0] if len(set(bounds)) == 1 else torch.tensor(
            bounds, device=rows.device)[:, None]
        torch._assert_async(((rows >= 0) & (rows < bound)).all(),
                            f"cl_infonce: ids must lie in [0, num_clusters="
                            f"{bounds[0] if len(ks) == 1 else bounds})")
    k = max(counts)
    if len(inv) > 1:
        stacked = stacked + torch.arange(0, len(inv) * k, k, device=stacked.device)[:, None]
    return stacked, k


def _contrast(zn: torch.Tensor, all_z: torch.Tensor, inv: torch.Tensor, k: int, offset: int,
              world: int, temperature: float, form: str) -> torch.Tensor:
    """The loss summed over groups: zn (G, M, D) anchors, all_z (G, N, D) keys (both unit
    rows, the anchors rows ``offset`` on of the keys), inv (G, N) the keys' ids in [0, k),
    no id shared between groups."""
    work_dtype = zn.dtype
    m = zn.shape[1]
    local_inv = inv[:, offset : offset + m]
    flat = inv.reshape(-1)
    # a scatter of ones rather than bincount, which reads the maximum back to the host
    counts = torch.zeros(k, dtype=torch.long, device=inv.device).index_add_(
        0, flat, torch.ones_like(flat))
    num_pos = counts[local_inv] - 1
    valid = num_pos > 0
    # Every rank holds all ids, so the global count of valid anchors needs no all_reduce.
    num_valid = (counts[inv] > 1).sum(dim=1, keepdim=True)
    # Per-anchor weight of each group's mean (0 for anchors without a positive): constants,
    # so the reduction is one product and one sum.
    weight = valid.to(work_dtype) * (world / num_valid.clamp_min(1).to(work_dtype))
    if form == "in" and bool(counts.max() <= 2):
        form = "out"  # one positive per anchor: both forms are -s_ap + log-partition

    # e_aj = exp(s_aj - shift_a), self entry 0, in one (M, N) buffer per group: the shift is
    # folded into the GEMM and exp runs in place, so the only (M, N) passes are GEMM, exp,
    # row sum and, in backward, exp's product and the GEMMs (logsumexp would exponentiate
    # twice).
    inv_t = 1.0 / temperature
    keys_t = all_z.transpose(1, 2)
    if 2.0 * inv_t <= _CONST_SHIFT_LIMIT[work_dtype]:
        # |s_aj| <= 1/tau for unit rows, so shifting by 1/tau keeps every term in
        # [exp(-2/tau), 1]: no overflow, no underflow of a row sum.
        shift = inv_t
        sim = torch.baddbmm(all_z.new_full((1, 1, 1), -inv_t), zn, keys_t, alpha=inv_t)
        sim.diagonal(offset, dim1=1, dim2=2).fill_(float("-inf"))
    else:  # tau so small that exp(-2/tau) underflows: shift by each row's max instead
        sim = torch.bmm(zn, keys_t).mul_(inv_t)
        sim.diagonal(offset, dim1=1, dim2=2).fill_(float("-inf"))
        row_max = sim.detach().amax(dim=2, keepdim=True)
        sim = sim - row_max
        shift = row_max.squeeze(2)
    e = sim.exp_()
    log_partition = e.sum(dim=2).log() + shift

    if form == "out":
        # sum_{p in P(a)} z_a . z_p = z_a . (C_{id_a} - z_a), C_k = sum of cluster k's rows
        d = all_z.shape[2]
        centroids = all_z.new_zeros(k, d).index_add_(0, flat, all_z.reshape(-1, d))
        # index_select: its backward is an index_add, cheaper on CPU than advanced indexing's
        mine = centroids.index_select(0, local_inv.reshape(-1)).view_as(zn)
        pos_dot = (zn * (mine - zn)).sum(dim=2)
        per_anchor = log_partition - pos_dot * (inv_t / num_pos.clamp_min(1).to(work_dtype))
    else:
        # (M, k) sums over each group's columns (a view of e for one group)
        columns = e.transpose(0, 1).reshape(m, -1)
        per_cluster = e.new_zeros(m, k).index_add_(1, flat, columns)
        pos = per_cluster.gather(1, local_inv.T).T
        # Invalid anchors have pos = 0; a valid one underflows only when every positive is
        # ~100 logits below the hardest negative (tau < 0.02): keep the loss finite there.
        pos = torch.where(valid, pos.clamp_min(torch.finfo(pos.dtype).tiny), torch.ones_like(pos))
        per_anchor = log_partition - (pos.log() + shift)

    # every per_anchor is finite (no positive: pos_dot = 0 / pos = 1), so weight 0 drops it
    return (per_anchor * weight).sum()
