"""WCL's losses on weak labels: the swapped supervised contrastive loss of the two large
views, and the two multi-crop terms of the small crops (plain torch, no host import)."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from clinfonce_plugin.losses.cl_infonce import cl_infonce
from clinfonce_plugin.utils.distributed import gather_with_grad, get_rank


def wcl_swap(
    v1: torch.Tensor,
    v2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    temperature: float = 0.1,
    form: str = "out",
    gather: bool = True,
    num_clusters: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """Implements WCL's swapped weak-label loss (https://arxiv.org/abs/2110.04770).

    ``L = L_sup(V1, y2) + L_sup(V2, y1)``: each view is contrasted within its own view
    against the (gathered) batch of that view, self excluded, with positives given by the
    weak labels of the other view. ``L_sup`` is ``cl_infonce``; the default ``form="out"``
    averages log-probabilities over positives, as WCL's official code does
    (mingkai-zheng/WCL, ``network/wcl.py``, ``sup_contra``). The official code returns
    half of this sum; scale with the loss weight.

    Args:
        v1: (B, D) local rows of view 1 (projection head phi), not necessarily normalised.
        v2: (B, D) local rows of view 2.
        y1: (B,) integer weak labels computed from view 1, ids consistent across ranks.
        y2: (B,) integer weak labels computed from view 2.
        temperature: tau > 0.
        form: ``"out"`` or ``"in"`` (see ``cl_infonce``).
        gather: contrast against all ranks' rows when torch.distributed is initialised.
        num_clusters: (C1, C2) when y1 and y2 are contiguous ids in [0, C1) and [0, C2)
            over the gathered batch (canonical weak labels are): saves ``torch.unique``.

    Returns:
        Scalar loss.
    """
    if not all(isinstance(t, torch.Tensor) for t in (v1, v2, y1, y2)):
        raise ValueError("wcl_swap expects tensors v1, v2, y1, y2")
    if v1.shape != v2.shape or v1.dim() != 2:
        raise ValueError(
            f"v1 and v2 must be 2-D tensors (B, D) of the same shape, got "
            f"{tuple(v1.shape)} and {tuple(v2.shape)}"
        )
    if y1.shape != (v1.shape[0],) or y2.shape != (v1.shape[0],):
        raise ValueError(
            f"y1 and y2 must be 1-D with B={v1.shape[0]} entries, got {tuple(y1.shape)} "
            f"and {tuple(y2.shape)}"
        )
    c1, c2 = num_clusters if num_clusters is not None else (None, None)
    loss_1 = cl_infonce(v1, y2, temperature=temperature, form=form, gather=gather,
                        num_clusters=c2)
    loss_2 = cl_infonce(v2, y1, temperature=temperature, form=form, gather=gather,
                        num_clusters=c1)
    return loss_1 + loss_2


def _owners(num_small: int, batch: int, device: torch.device) -> torch.Tensor:
    """Gathered-batch row of the image each local small crop belongs to (crop-major)."""
    return (torch.arange(batch, device=device) + get_rank() * batch).repeat(num_small)


def multicrop_nce(small: torch.Tensor, large: Sequence[torch.Tensor],
                  temperature: float) -> torch.Tensor:
    """L_cNCE: each small crop must pick its own image among the large views of the batch.

    With ``q_a`` a small crop of image ``i(a)`` (normalised), ``k^v_j`` large view v of
    image j (normalised, gathered over ranks, N rows)::

        L_cNCE = 1/2 sum_{v=1,2} mean_a -log softmax_j(q_a . k^v_j / tau)[i(a)]

    The denominator runs over all N large views of view v (the image's own view included).
    Under KNN multi-crop the crop is cut from a neighbour of i(a) yet still assigned to i(a):
    that is what adds neighbours as positives.

    Args:
        small: (S * B, D) local small-crop embeddings, crop-major (crop s of image b at row
            s * B + b, the order of ``torch.cat`` over the host's per-crop outputs).
        large: two (B, D) local large-view embeddings.
        temperature: tau > 0.

    Returns:
        Scalar; the mean over local anchors (DDP averaging gives the global mean).
    """
    batch = large[0].shape[0]
    if small.shape[0] % batch != 0:
        raise ValueError(f"small crops ({small.shape[0]} rows) are not a multiple of the "
                         f"batch ({batch})")
    q = F.normalize(small, dim=1)
    owners = _owners(small.shape[0] // batch, batch, small.device)
    total = small.new_zeros(())
    for view in large:
        keys = gather_with_grad(F.normalize(view, dim=1))
        total = total + F.cross_entropy(q @ keys.T / temperature, owners)
    return total / len(large)


def multicrop_swap(small: torch.Tensor, large: Sequence[torch.Tensor],
                   labels: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """L_cswap: each small crop is supervised by the weak class of its image, swapped.

    With ``q_a`` a small crop of image ``i(a)``, ``k^v_j`` large view v of image j (phi,
    normalised, gathered, N rows) and ``y^v`` the weak labels computed from view v::

        P_v(a) = {j : y^{3-v}_j = y^{3-v}_{i(a)}}         (contains i(a) itself)
        l_v(a) = -1/|P_v(a)| sum_{p in P_v(a)} log softmax_j(q_a . k^v_j / tau)[p]
        L_cswap = sum_{v=1,2} mean_a l_v(a)

    i.e. the small crop plays the role of an extra view-v anchor in ``L_sup(V_v, y_{3-v})``
    of ``wcl_swap`` (keys of view v, positives from the other view's labels, SupCon L_out);
    it is not among the keys, so nothing is excluded. Summed over the two views like
    ``wcl_swap``.

    Args:
        small: (S * B, D) local small-crop embeddings, crop-major.
        large: (v1, v2), each (B, D) local large-view embeddings.
        labels: (y1, y2), each (N,) gathered weak labels of view 1 / view 2.
        temperature: tau > 0.
    """
    batch = large[0].shape[0]
    q = F.normalize(small, dim=1)
    owners = _owners(small.shape[0] // batch, batch, small.device)
    total = small.new_zeros(())
    for v, view in enumerate(large):
        keys = gather_with_grad(F.normalize(view, dim=1))
        y = labels[1 - v].to(small.device)
        positive = (y[owners][:, None] == y[None, :]).to(q.dtype)  # (S*B, N)
        log_prob = F.log_softmax(q @ keys.T / temperature, dim=1)
        per_anchor = -(positive * log_prob).sum(1) / positive.sum(1)
        total = total + per_anchor.mean()
    return total
