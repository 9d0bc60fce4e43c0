"""Cluster-aware InfoNCE: positives are all other views whose cluster id equals the anchor's."""
import math
from typing import Optional, Tuple

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
    terms use per-cluster sums (no (N, N) mask is built).

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
    _check_inputs(z, ids, temperature, form, num_clusters)
    m = z.shape[0]
    distributed = (gather or gathered is not None) and is_dist() and get_world_size() > 1
    world = get_world_size() if distributed else 1
    rank = get_rank() if distributed else 0
    if gathered is not None:
        _check_gathered(z, ids, gathered, world * m, rank * m)
    elif distributed:
        sizes = all_gather_no_grad(torch.tensor([m], device=z.device))
        if bool((sizes != m).any()):
            raise ValueError(
                f"cl_infonce(gather=True) needs the same number of rows on every rank, got "
                f"{sizes.tolist()} (rank {rank}); pad the batch or use drop_last=True"
            )
    n = world * m
    if n < 2:  # nothing to contrast against
        return z.sum() * 0

    # Half precision cannot hold exp/log-sum-exp over large batches reliably.
    work_dtype = torch.promote_types(z.dtype, torch.float32)
    offset = rank * m  # where this rank's block sits in the gathered batch
    if gathered is not None:
        all_z = F.normalize(gathered[0].to(work_dtype), dim=1)
        # this rank's rows hold z's values: the anchors are taken from the normalised
        # gathered rows (one normalisation per step, and the gradient reaches z through
        # the gather's backward, which hands each rank its block)
        zn = all_z[offset : offset + m]
    else:
        zn = F.normalize(z.to(work_dtype), dim=1)
        all_z = gather_with_grad(zn) if distributed else zn
    ids = ids.to(device=z.device, dtype=torch.long)
    if gathered is not None:
        all_ids = gathered[1].to(device=z.device, dtype=torch.long)
    else:
        all_ids = all_gather_no_grad(ids) if distributed else ids
    if num_clusters is None:
        uniq, inv = torch.unique(all_ids, return_inverse=True)
        k = uniq.numel()
        if bool(uniq[0] < 0):
            raise ValueError(f"ids must be >= 0, got min id {int(uniq[0])}")
    else:
        inv, k = all_ids, num_clusters
        if devices.host_reads_free(all_ids):
            lo, hi = int(all_ids.min()), int(all_ids.max())
            if lo < 0 or hi >= num_clusters:
                raise ValueError(
                    f"ids must lie in [0, num_clusters={num_clusters}), got range [{lo}, {hi}]"
                )
        else:
            # on an accelerator a host read would stall its queue every step: the device
            # checks the range itself and fails the step's next synchronisation
            torch._assert_async(((all_ids >= 0) & (all_ids < num_clusters)).all(),
                                f"cl_infonce: ids must lie in [0, num_clusters={num_clusters})")

    local_inv = inv[offset : offset + m]
    # a scatter of ones rather than bincount, which reads the maximum back to the host
    counts = torch.zeros(k, dtype=torch.long, device=inv.device).index_add_(
        0, inv, torch.ones_like(inv))
    num_pos = counts[local_inv] - 1
    valid = num_pos > 0
    # Every rank holds all ids, so the global count of valid anchors needs no all_reduce.
    num_valid = (counts[inv] > 1).sum()
    # Per-anchor weight of the mean (0 for anchors without a positive): constants, so the
    # reduction is one product and one sum.
    weight = valid.to(work_dtype) * (world / num_valid.clamp_min(1).to(work_dtype))
    if form == "in" and bool(counts.max() <= 2):
        form = "out"  # one positive per anchor: both forms are -s_ap + log-partition

    # e_aj = exp(s_aj - shift_a), self entry 0, in one (M, N) buffer: the shift is folded
    # into the GEMM and exp runs in place, so the only (M, N) passes are GEMM, exp, row sum
    # and, in backward, exp's product and the GEMMs (logsumexp would exponentiate twice).
    inv_t = 1.0 / temperature
    if 2.0 * inv_t <= _CONST_SHIFT_LIMIT[work_dtype]:
        # |s_aj| <= 1/tau for unit rows, so shifting by 1/tau keeps every term in
        # [exp(-2/tau), 1]: no overflow, no underflow of a row sum.
        shift = inv_t
        sim = torch.addmm(all_z.new_full((1,), -inv_t), zn, all_z.T, alpha=inv_t)
        sim.diagonal(offset).fill_(float("-inf"))
    else:  # tau so small that exp(-2/tau) underflows: shift by each row's max instead
        sim = torch.mm(zn, all_z.T).mul_(inv_t)
        sim.diagonal(offset).fill_(float("-inf"))
        row_max = sim.detach().amax(dim=1, keepdim=True)
        sim = sim - row_max
        shift = row_max.squeeze(1)
    e = sim.exp_()
    log_partition = e.sum(dim=1).log() + shift

    if form == "out":
        # sum_{p in P(a)} z_a . z_p = z_a . (C_{id_a} - z_a), C_k = sum of cluster k's rows
        centroids = all_z.new_zeros(k, all_z.shape[1]).index_add_(0, inv, all_z)
        # index_select: its backward is an index_add, cheaper on CPU than advanced indexing's
        pos_dot = (zn * (centroids.index_select(0, local_inv) - zn)).sum(dim=1)
        per_anchor = log_partition - pos_dot * (inv_t / num_pos.clamp_min(1).to(work_dtype))
    else:
        per_cluster = e.new_zeros(m, k).index_add_(1, inv, e)  # (M, K) sums over columns
        pos = per_cluster.gather(1, local_inv[:, None]).squeeze(1)
        # Invalid anchors have pos = 0; a valid one underflows only when every positive is
        # ~100 logits below the hardest negative (tau < 0.02): keep the loss finite there.
        pos = torch.where(valid, pos.clamp_min(torch.finfo(pos.dtype).tiny), torch.ones_like(pos))
        per_anchor = log_partition - (pos.log() + shift)

    # every per_anchor is finite (no positive: pos_dot = 0 / pos = 1), so weight 0 drops it
    return (per_anchor * weight).sum()
