"""Momentum-encoder pieces of the runtime's momentum methods (MoCo v2+): the cosine schedule
of the EMA coefficient tau, the EMA update itself and the FIFO queue of past keys.

Plain torch (no Lightning): the method (``base.BaseMomentumMethod``, ``methods.MoCoV2Plus``)
decides when each runs.
"""
import math

import torch
import torch.nn as nn


def cosine_tau(step: int, max_steps: int, base_tau: float, final_tau: float) -> float:
    """The EMA coefficient after ``step`` of ``max_steps`` optimizer steps: ``base_tau`` at step
    0, rising along a half cosine to ``final_tau`` at ``max_steps`` (BYOL's schedule, as
    solo-learn's MomentumUpdater):
    ``final - (final - base) * (cos(pi * step / max_steps) + 1) / 2``.
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    if not 0 <= base_tau <= final_tau <= 1:
        raise ValueError(f"expected 0 <= base_tau <= final_tau <= 1, got {base_tau}, {final_tau}")
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * step / max_steps) + 1) / 2


@torch.no_grad()
def init_momentum_(online: nn.Module, momentum: nn.Module) -> None:
    """Makes ``momentum`` a copy of ``online`` (parameters and buffers) that gets no gradient."""
    momentum.load_state_dict(online.state_dict())
    momentum.requires_grad_(False)


@torch.no_grad()
def ema_update_(online: nn.Module, momentum: nn.Module, tau: float) -> None:
    """``m <- tau * m + (1 - tau) * o`` for every parameter pair, in place.

    Only parameters move: buffers such as BatchNorm running statistics are the momentum
    encoder's own, accumulated by its forward passes (as solo-learn's MomentumUpdater).
    """
    pairs = list(zip(online.parameters(), momentum.parameters(), strict=True))
    for o, m in pairs:
        if o.shape != m.shape:
            raise ValueError(f"online and momentum parameters differ in shape: "
                             f"{tuple(o.shape)} vs {tuple(m.shape)}")
        m.mul_(tau).add_(o.detach(), alpha=1.0 - tau)


@torch.no_grad()
def enqueue_(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Writes ``keys`` over the oldest entries of the ring buffer ``queue``, in place.

    Args:
        queue: (V, D, K) one queue of K keys of dimension D per view.
        ptr: (1,) long, the slot of the oldest entry; advanced by N (mod K).
        keys: (V, N, D) the new keys of each view, N <= K, in the order they enter.
    """
    v, d, k = queue.shape
    if keys.dim() != 3 or keys.shape[0] != v or keys.shape[2] != d:
        raise ValueError(f"keys of shape {tuple(keys.shape)} do not fit a queue of shape "
                         f"{tuple(queue.shape)}: expected ({v}, N, {d})")
    n = keys.shape[1]
    if n > k:
        raise ValueError(f"{n} new keys do not fit a queue of {k}: queue_size must be at least "
                         f"the global batch (batch size x processes)")
    start = int(ptr[0])
    slots = (start + torch.arange(n, device=queue.device)) % k  # wraps around the end
    queue[:, :, slots] = keys.transpose(1, 2).to(queue.dtype)
    ptr[0] = (start + n) % k
