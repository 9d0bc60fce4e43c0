"""Cross-rank helpers for torch.distributed; every helper is the identity in a single process.

All gathers use the default process group and require the same shape on every rank
(check sizes first where they can differ, e.g. with ``all_gather_no_grad`` of a size tensor).
"""
from typing import List

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when torch.distributed is available and a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Rank of this process in the default group, 0 when not distributed."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """Number of processes in the default group, 1 when not distributed."""
    return dist.get_world_size() if is_dist() else 1


def _all_gather_list(x: torch.Tensor) -> List[torch.Tensor]:
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return out


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every rank's gradient of a block back to its owner."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank = dist.get_rank()
        ctx.n = x.shape[0]
        return torch.cat(_all_gather_list(x), dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # Every rank's loss depends on every block of the gathered tensor; summing the
        # gradients over ranks gives this rank's block its full gradient, which DDP then
        # divides by the world size like any other gradient.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.n  # where this rank's block sits in the gathered batch
        return grad[start : start + ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenates every rank's ``x`` along dim 0, keeping the gradient path to local rows.

    Args:
        x: (n, ...) this rank's rows; the same shape on every rank.

    Returns:
        (world_size * n, ...) rank 0's rows first; ``x`` itself when not distributed.
        Backward all-reduces (sums) the incoming gradient of the gathered tensor over ranks
        and returns this rank's slice, so that with DDP's gradient averaging the update
        equals the single-process gradient of the mean of the ranks' losses.
    """
    if not is_dist() or get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) per rank -> (world_size * n, ...) concatenated in rank order, no gradient.

    ``x`` itself when not distributed. Same shape required on every rank.
    """
    if not is_dist() or get_world_size() == 1:
        return x
    return torch.cat(_all_gather_list(x), dim=0)


@torch.no_grad()
def all_reduce_sum_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``x`` over ranks (a new tensor; ``x`` is left unchanged)."""
    if not is_dist() or get_world_size() == 1:
        return x
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def _comm_device() -> torch.device:
    """Where a collective's tensor must live: the current CUDA device under NCCL (which only
    reduces CUDA tensors), the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def all_ranks_agree(x: torch.Tensor) -> bool:
    """Whether every rank holds an equal tensor ``x``; the same answer on every rank.

    One all_reduce(MAX) of ``[x, -x]``: the tensors agree iff the element-wise maximum equals
    this rank's ``x`` and the maximum of the negatives equals ``-x``, on every rank; the
    per-rank verdicts are then all-reduced so that no rank decides alone. The comparison is
    exact (no checksum). True when not distributed.

    Args:
        x: integer, bool or float tensor (float NaNs never agree); the same shape and dtype
            on every rank (a collective over different shapes fails or hangs).
    """
    if not is_dist() or get_world_size() == 1:
        return True
    device = _comm_device()
    mine = x.detach().reshape(-1).to(device)
    if not mine.is_floating_point():
        mine = mine.long()  # negation needs signed numbers (bool, uint8)
    both = torch.stack([mine, -mine])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    differs = torch.tensor([float(not (torch.equal(both[0], mine) and torch.equal(both[1], -mine)))],
                           device=device)
    dist.all_reduce(differs, op=dist.ReduceOp.MAX)
    return bool(differs.item() == 0)
