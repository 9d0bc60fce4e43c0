"""Cluster-aware InfoNCE: positives are all other views whose cluster id equals the anchor's."""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from clinfonce_plugin.utils import devices
from clinfonce_plugin.utils.precision import autocast_off
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
_NORM_EPS = 1e-12  # F.normalize's


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
    # The anchors are this rank's block of the keys (rows ``offset`` on): one normalisation
    # per step, and the anchors' gradient reaches z through the gather's backward, which
    # sums every rank's gradient of a row and hands each rank its block.
    if gathered is not None:
        keys = _stack([g[0] for g in gathered]).to(work_dtype)
        all_ids = [g[1].to(device=z0.device, dtype=torch.long) for g in gathered]
    else:
        rows = _stack(zs).to(work_dtype)
        keys = _stack([gather_with_grad(x) for x in rows]) if distributed else rows
        local = [i.to(device=z0.device, dtype=torch.long) for i in ids]
        all_ids = [all_gather_no_grad(i) for i in local] if distributed else local
    inv, k = _contiguous_ids(all_ids, ks)  # (G, N), ids of group g in [g * k, (g + 1) * k)
    with autocast_off(z0.device.type):
        return _contrast(keys, inv, groups * k, offset, m, world, temperature, form)


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


def _contrast(keys: torch.Tensor, inv: torch.Tensor, k: int, offset: int, m: int,
              world: int, temperature: float, form: str) -> torch.Tensor:
    """The loss summed over groups: keys (G, N, D) rows (normalised here), the anchors
    their rows ``offset`` to ``offset + m``; inv (G, N) the rows' ids in [0, k), no id
    shared between groups."""
    local_inv = inv[:, offset : offset + m]
    flat = inv.reshape(-1)
    # rows per id: a scatter of ones rather than bincount, which reads the maximum back to
    # the host; in the working dtype, as every use below is arithmetic
    counts = keys.new_zeros(k).index_add_(0, flat, keys.new_ones(flat.shape))
    num_pos = counts[local_inv] - 1
    valid = num_pos > 0
    # Every rank holds all ids, so the global count of valid anchors needs no all_reduce.
    num_valid = (counts[inv] > 1).sum(dim=1, keepdim=True, dtype=keys.dtype)
    # Per-anchor weight of each group's mean (0 for anchors without a positive): constants,
    # so the reduction is one product and one sum.
    weight = torch.where(valid, world / num_valid.clamp_min(1), 0.0)
    inv_t = 1.0 / temperature
    if form == "in" and bool(counts.max() <= 2):
        form = "out"  # one positive per anchor: both forms are -s_ap + log-partition
    if form == "out":
        # each positive's logit s_ap enters l_a with weight 1 / |P(a)|
        coef = weight * inv_t / num_pos.clamp_min(1)
        return _OutForm.apply(keys, flat, local_inv.reshape(-1), weight, coef, k, offset,
                              inv_t)

    all_z = F.normalize(keys, dim=-1)
    sim, shift = _shifted_logits(all_z[:, offset : offset + m], all_z, offset, inv_t)
    e = sim.exp_()
    log_partition = e.sum(dim=2).log() + shift
    # (M, k) sums over each group's columns (a view of e for one group)
    columns = e.transpose(0, 1).reshape(m, -1)
    per_cluster = e.new_zeros(m, k).index_add_(1, flat, columns)
    pos = per_cluster.gather(1, local_inv.T).T
    # Invalid anchors have pos = 0; a valid one underflows only when every positive is
    # ~100 logits below the hardest negative (tau < 0.02): keep the loss finite there.
    pos = torch.where(valid, pos.clamp_min(torch.finfo(pos.dtype).tiny), torch.ones_like(pos))
    per_anchor = log_partition - (pos.log() + shift)
    # every per_anchor is finite (no positive: pos = 1), so weight 0 drops it
    return (per_anchor * weight).sum()


def _shifted_logits(anchors: torch.Tensor, keys: torch.Tensor, offset: int,
                    inv_t: float) -> Tuple[torch.Tensor, Union[float, torch.Tensor]]:
    """(G, M, N) logits ``s_aj - shift_a`` with the self entry -inf, and the shift.

    Their exponentials then fill the same buffer (exp in place): with the shift folded into
    the GEMM, the only (M, N) passes are the GEMM, exp, the row sum and, in backward, the
    product with the row weights and the two GEMMs (logsumexp would exponentiate twice)."""
    keys_t = keys.transpose(1, 2)
    if 2.0 * inv_t <= _CONST_SHIFT_LIMIT[keys.dtype]:
        # |s_aj| <= 1/tau for unit rows, so shifting by 1/tau keeps every term in
        # [exp(-2/tau), 1]: no overflow, no underflow of a row sum.
        sim = torch.baddbmm(keys.new_full((1, 1, 1), -inv_t), anchors, keys_t, alpha=inv_t)
        sim.diagonal(offset, dim1=1, dim2=2).fill_(float("-inf"))
        return sim, inv_t
    # tau so small that exp(-2/tau) underflows: shift by each row's max instead
    sim = torch.bmm(anchors, keys_t).mul_(inv_t)
    sim.diagonal(offset, dim1=1, dim2=2).fill_(float("-inf"))
    row_max = sim.detach().amax(dim=2, keepdim=True)
    return sim.sub_(row_max), row_max.squeeze(2)


class _OutForm(torch.autograd.Function):
    """``sum_a w_a l_a`` of the "out" form, from the rows before normalisation, with its
    gradient in closed form: autograd's backward of the same arithmetic (normalisation
    included) dispatches about twice the kernels, and a GPU training step at small sizes is
    bound by launching kernels.

    With X the (G, N, D) unit keys (x / max(|x|, eps), eps = 1e-12 as ``F.normalize``),
    A = X[:, offset : offset + M] the anchors, E the shifted exponentials (self entry 0),
    Z their row sums, C_k the sum of cluster k's keys, w_a the anchor weights and
    c_a = w_a / (tau |P(a)|)::

        L = sum_a w_a (log Z_a + shift_a) - c_a A_a . (C_{id_a} - A_a)
        anchor role: dL/dA_a = (1/tau) sum_j (w_a E_aj / Z_a) X_j - c_a (C_{id_a} - A_a)
        key role:    dL/dX_j = (1/tau) sum_a (w_a E_aj / Z_a) A_a - S_{id_j}
                               + c_a A_a if j is anchor a (no row is its own positive)
        dL/dx = (dL/dX - X (X . dL/dX)) / |x|     (dL/dX / eps where |x| < eps)

    with S_k the sum of c_a A_a over the anchors of cluster k; an anchor row's gradient is
    the sum of its two roles. Checked against autograd's gradient in tests/losses."""

    @staticmethod
    def forward(ctx, rows, flat_ids, local_ids, weight, coef, k, offset, inv_t):
        d = rows.shape[2]
        m = weight.shape[1]
        norm = torch.linalg.vector_norm(rows, dim=2, keepdim=True)
        # the projection of the normalisation's gradient, 0 where the norm is clamped
        unclamped = norm > _NORM_EPS
        norm.clamp_min_(_NORM_EPS)
        keys = rows / norm
        anchors = keys[:, offset : offset + m]
        sim, shift = _shifted_logits(anchors, keys, offset, inv_t)
        e = sim.exp_()
        row_sum = e.sum(dim=2)
        # sum_{p in P(a)} A_a . X_p = A_a . (C_{id_a} - A_a); index_select is a plain gather
        centroids = keys.new_zeros(k, d).index_add_(0, flat_ids, keys.reshape(-1, d))
        others = centroids.index_select(0, local_ids).view_as(anchors).sub_(anchors)
        loss = (weight * (row_sum.log() + shift) - coef * (anchors * others).sum(dim=2)).sum()
        ctx.save_for_backward(keys, norm, unclamped, e, row_sum, others, weight, coef,
                              flat_ids, local_ids)
        ctx.k, ctx.offset, ctx.inv_t = k, offset, inv_t
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (keys, norm, unclamped, e, row_sum, others, weight, coef, flat_ids,
         local_ids) = ctx.saved_tensors
        offset, m, d = ctx.offset, weight.shape[1], keys.shape[2]
        anchors = keys[:, offset : offset + m]
        # softmax rows times w_a / tau and the incoming gradient
        probs = e * (weight * (ctx.inv_t * grad_loss) / row_sum).unsqueeze(2)
        c = (coef * grad_loss).unsqueeze(2)
        c_anchors = c * anchors
        # key role of every row
        grad = torch.bmm(probs.transpose(1, 2), anchors)
        s = keys.new_zeros(ctx.k, d).index_add_(0, local_ids, c_anchors.reshape(-1, d))
        grad.sub_(s.index_select(0, flat_ids).view_as(grad))
        # anchor role, and c_a A_a back at the anchor's own row
        block = grad[:, offset : offset + m]
        block.add_(torch.bmm(probs, keys)).sub_(c * others).add_(c_anchors)
        # through the normalisation
        radial = (keys * grad).sum(dim=2, keepdim=True).mul_(unclamped)
        return (grad.sub_(keys * radial).div_(norm), None, None, None, None, None, None,
                None)
