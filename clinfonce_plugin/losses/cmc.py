"""CMC's two-view contrastive loss with in-batch negatives, gathered across ranks."""
import math

import torch
import torch.nn.functional as F

from clinfonce_plugin.utils.distributed import (
    all_gather_no_grad,
    gather_with_grad,
    get_rank,
    get_world_size,
    is_dist,
)
from clinfonce_plugin.utils.precision import autocast_off


def _check_inputs(a: torch.Tensor, b: torch.Tensor, temperature: float) -> None:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) \
            or not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"Illegal temperature: {temperature!r}; expected a finite number > 0")
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 2-D tensor (M, D), got {shape}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (row i of each is a view of sample "
                         f"i), got {tuple(a.shape)} and {tuple(b.shape)}")


def cross_view_infonce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1,
                       gather: bool = True) -> torch.Tensor:
    """Implements CMC's contrastive loss between two views
    (https://arxiv.org/abs/1906.05849, Eq. 2-3), with the batch as the negatives:
    ``L(a, b) = L(a -> b) + L(b -> a)``, with ``a``, ``b`` L2-normalised and::

        L(a -> b) = -(1 / N) sum_i log( exp(a_i . b_i / tau) / sum_j exp(a_i . b_j / tau) )

    where j runs over the N rows of the gathered batch, the positive j = i included (each
    anchor is contrasted with the other view only, never with its own view).

    Under DDP (``gather=True``) each rank's anchors are its own rows, contrasted with every
    rank's rows of the other view (gathered with gradient); the returned value is the mean
    over this rank's anchors, so that the average over ranks, and DDP's averaged gradients,
    equal the single-process loss on the concatenated batch. All ranks must pass the same
    number of rows.

    Args:
        a: (M, D) this rank's embeddings of view 1; need not be normalised.
        b: (M, D) the same samples' embeddings of view 2, row for row.
        temperature: tau > 0.
        gather: contrast against all ranks' rows when torch.distributed is initialised.

    Returns:
        Scalar loss (float32 or float64), computed in at least float32 also under autocast.
    """
    _check_inputs(a, b, temperature)
    m = a.shape[0]
    distributed = gather and is_dist() and get_world_size() > 1
    if distributed:
        sizes = all_gather_no_grad(torch.tensor([m], device=a.device))
        if bool((sizes != m).any()):
            raise ValueError(f"cross_view_infonce(gather=True) needs the same number of rows "
                             f"on every rank, got {sizes.tolist()} (rank {get_rank()}); pad the "
                             f"batch or use drop_last=True")
    work_dtype = torch.promote_types(a.dtype, torch.float32)
    a = F.normalize(a.to(work_dtype), dim=1)
    b = F.normalize(b.to(work_dtype), dim=1)
    all_a = gather_with_grad(a) if distributed else a
    all_b = gather_with_grad(b) if distributed else b
    offset = get_rank() * m if distributed else 0  # this rank's rows in the gathered batch
    positives = offset + torch.arange(m, device=a.device)
    with autocast_off(a.device.type):  # in work_dtype, also under autocast
        a_to_b = F.cross_entropy(a @ all_b.T / temperature, positives)
        b_to_a = F.cross_entropy(b @ all_a.T / temperature, positives)
    return a_to_b + b_to_a
