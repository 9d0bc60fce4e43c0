"""SwAV for the bundled runtime: Sinkhorn-Knopp codes and the swapped-prediction loss.

Pure torch; the distributed sums of Sinkhorn-Knopp are all-reduced so that every rank
normalises over the global batch (as in the SwAV paper and solo-learn).
"""
from typing import List

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iters: int = 3) -> torch.Tensor:
    """Equal-partition soft codes of a batch (SwAV, Caron et al. 2020, Alg. 1).

    scores: (B, K) prototype scores of this rank's samples. Returns (B, K) codes whose rows
    sum to 1; over the global batch every prototype receives mass B_total / K.
    """
    if epsilon <= 0 or iters < 1:
        raise ValueError(f"Illegal Sinkhorn parameters: epsilon={epsilon}, iters={iters}")
    scores = scores.float()
    # one shift for all ranks (a per-rank shift would weigh the ranks' samples differently)
    top = scores.max().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp((scores - top) / epsilon).T  # (K, B)
    b = torch.tensor(float(q.shape[1]), device=q.device)
    b = _all_reduce(b)
    k = q.shape[0]
    q /= _all_reduce(q.sum())
    for _ in range(iters):
        q /= _all_reduce(q.sum(dim=1, keepdim=True))  # each prototype: total mass 1/K
        q /= k
        q /= q.sum(dim=0, keepdim=True)  # each sample: total mass 1/B
        q /= b
    return (q * b).T


def swav_loss(preds: List[torch.Tensor], codes: List[torch.Tensor], temperature: float) -> torch.Tensor:
    """Swapped prediction: code of crop i predicted from every other crop v.

    preds: per crop (B, K) prototype scores (all crops, large first); codes: per large crop
    (B, K) Sinkhorn codes. Loss = mean over (i, v != i) of -sum_k q_i log softmax(p_v / t).
    """
    losses = []
    for i, q in enumerate(codes):
        for v, p in enumerate(preds):
            if v == i:
                continue
            losses.append(-(q * F.log_softmax(p / temperature, dim=1)).sum(dim=1).mean())
    return torch.stack(losses).mean()
