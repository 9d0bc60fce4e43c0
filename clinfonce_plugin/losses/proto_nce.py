"""The prototype term of ProtoNCE (PCL): each embedding against the k-means prototypes, each
prototype's logit scaled by the prototype's own concentration."""
from typing import Optional

import torch
import torch.nn.functional as F

from clinfonce_plugin.utils.distributed import all_gather_no_grad, get_world_size, is_dist
from clinfonce_plugin.utils.precision import autocast_off


def _check_inputs(z: torch.Tensor, ids: torch.Tensor, prototypes: torch.Tensor,
                  concentration: torch.Tensor, num_negatives: Optional[int]) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a 2-D tensor (M, D), got {shape}")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.shape[0] != z.shape[0]:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a 1-D tensor with one cluster id per row of z "
                         f"({z.shape[0]},), got {shape}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor, got dtype {ids.dtype}")
    if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2 \
            or prototypes.shape[1] != z.shape[1] or prototypes.shape[0] < 1:
        shape = tuple(prototypes.shape) if isinstance(prototypes, torch.Tensor) else \
            type(prototypes).__name__
        raise ValueError(f"prototypes must be a (K, {z.shape[1]}) tensor with K >= 1, "
                         f"got {shape}")
    k = prototypes.shape[0]
    if not isinstance(concentration, torch.Tensor) or tuple(concentration.shape) != (k,):
        shape = tuple(concentration.shape) if isinstance(concentration, torch.Tensor) else \
            type(concentration).__name__
        raise ValueError(f"concentration must be a ({k},) tensor, one value per prototype, "
                         f"got {shape}")
    if not bool(torch.isfinite(concentration).all()) or bool((concentration <= 0).any()):
        raise ValueError("concentration must be finite and > 0 for every prototype")
    if num_negatives is not None and (not isinstance(num_negatives, int)
                                      or isinstance(num_negatives, bool) or num_negatives < 0):
        raise ValueError(f"num_negatives must be None or an int >= 0, got {num_negatives!r}")
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"ids must lie in [0, K={k}), got range [{lo}, {hi}]")


def prototype_columns(batch_ids: torch.Tensor, num_clusters: int,
                      num_negatives: Optional[int],
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The prototypes in the softmax of a batch, as PCL samples them (its ``pcl/builder.py``).

    Every cluster of the batch is in (its prototype is the positive of the rows of that
    cluster and a negative of the others), plus ``num_negatives`` of the remaining clusters
    drawn uniformly without replacement. When no more than ``num_negatives`` remain, all of
    them are in (PCL's code would fail there); ``num_negatives=None`` takes every prototype.

    Args:
        batch_ids: (N,) cluster ids of the whole (gathered) batch.
        num_clusters: K, the number of prototypes.
        num_negatives: r, the prototypes drawn besides the batch's, or None.
        generator: a CPU ``torch.Generator`` for the draw; the same state on every rank
            gives the same columns everywhere. None: torch's global generator.

    Returns:
        (K,) bool mask on ``batch_ids``' device, True for the prototypes in the softmax.
    """
    device = batch_ids.device
    if num_negatives is None or num_negatives >= num_clusters:
        # every prototype is in whatever the batch holds: no draw, no copy of the ids to the
        # host
        return torch.ones(num_clusters, dtype=torch.bool, device=device)
    in_batch = torch.zeros(num_clusters, dtype=torch.bool)
    in_batch[batch_ids.detach().long().cpu()] = True
    others = (~in_batch).nonzero().squeeze(1)
    if others.numel() > num_negatives:
        others = others[torch.randperm(others.numel(), generator=generator)[:num_negatives]]
    columns = in_batch.clone()
    columns[others] = True
    return columns.to(device)


def proto_nce(z: torch.Tensor, ids: torch.Tensor, prototypes: torch.Tensor,
              concentration: torch.Tensor, num_negatives: Optional[int] = None,
              generator: Optional[torch.Generator] = None, gather: bool = True) -> torch.Tensor:
    """Implements the prototype term of ProtoNCE for one clustering (PCL, Li et al., ICLR
    2021, https://arxiv.org/abs/2005.04966, the ProtoNCE loss).

    With ``z_a`` and the prototypes ``c_j`` L2-normalised, ``phi_j`` the concentration of
    prototype j, ``y_a`` the cluster of row a and S the columns of ``prototype_columns``::

        l_a = -z_a . c_{y_a} / phi_{y_a} + log sum_{j in S} exp(z_a . c_j / phi_j)

    The loss is the mean of ``l_a`` over this rank's rows. S is drawn from the clusters of
    the whole batch: under DDP (``gather=True``) the ids are gathered (no gradient flows
    through them) and, with equal generators, every rank draws the same S; with the same
    number of rows on every rank the average of the ranks' losses, and DDP's averaged
    gradients, equal the single-process loss on the concatenated batch. S holds each
    cluster once (PCL's code has one column per image of the batch, so a cluster with
    several images of the batch counts several times in its denominator).

    Args:
        z: (M, D) this rank's embeddings (every view stacked); need not be normalised.
        ids: (M,) integer cluster id of each row, in [0, K).
        prototypes: (K, D) the clusters' centroids (normalised here; no gradient is needed).
        concentration: (K,) phi > 0 of each prototype (``clusters.concentration``).
        num_negatives: r, the prototypes outside the batch's clusters drawn into the softmax
            (PCL: 16384); None: every prototype.
        generator: CPU generator of that draw (the same state on every rank).
        gather: draw S from all ranks' ids when torch.distributed is initialised.

    Returns:
        Scalar loss (float32 or float64), computed in at least float32 also under autocast.
    """
    _check_inputs(z, ids, prototypes, concentration, num_negatives)
    m = z.shape[0]
    distributed = gather and is_dist() and get_world_size() > 1
    if distributed:
        sizes = all_gather_no_grad(torch.tensor([m], device=z.device))
        if bool((sizes != m).any()):
            raise ValueError(f"proto_nce(gather=True) needs the same number of rows on every "
                             f"rank, got {sizes.tolist()}")
    if m == 0:
        return z.sum() * 0
    ids = ids.to(device=z.device, dtype=torch.long)
    k = prototypes.shape[0]
    batch_ids = all_gather_no_grad(ids) if distributed else ids
    columns = prototype_columns(batch_ids, k, num_negatives, generator).to(z.device)
    selected = columns.nonzero().squeeze(1)
    # where each prototype sits among the selected columns (-1: not selected)
    position = torch.full((k,), -1, dtype=torch.long, device=z.device)
    position[selected] = torch.arange(selected.numel(), device=z.device)

    # half precision cannot hold the logits of small concentrations reliably
    work_dtype = torch.promote_types(z.dtype, torch.float32)
    zn = F.normalize(z.to(work_dtype), dim=1)
    protos = F.normalize(prototypes.detach().to(device=z.device, dtype=work_dtype), dim=1)
    phi = concentration.detach().to(device=z.device, dtype=work_dtype)
    with autocast_off(z.device.type):  # in work_dtype, also under autocast
        logits = (zn @ protos.index_select(0, selected).T) / phi.index_select(0, selected)
        return F.cross_entropy(logits, position[ids])


__all__ = ["prototype_columns", "proto_nce"]
