"""WCL's loss terms (https://arxiv.org/abs/2110.04770): L_NCE of the two large views of head
g, the swapped weak-label loss L_swap of head phi, and the small-crop terms L_cNCE (g) and
L_cswap (phi). Plain torch, no host import.

Each function takes this rank's rows and, optionally, ``keys``: the two large views already
gathered over ranks with gradient (``gather_with_grad``, rank 0's rows first), so that one
gather of each view serves every term of a step; without ``keys`` a function gathers what it
needs itself. Under DDP the returned values follow ``cl_infonce``'s convention: their mean
over ranks, and DDP's averaged gradients, are those of the single-process loss.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from clinfonce_plugin.losses.cl_infonce import cl_infonce, cl_infonce_groups
from clinfonce_plugin.utils.distributed import gather_with_grad, get_rank, get_world_size

Views = Sequence[torch.Tensor]


def instance_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
                 keys: Optional[Views] = None) -> torch.Tensor:
    """L_NCE: NT-Xent of the two large views (``cl_infonce`` with instance ids: the host's
    SimCLR loss, where both forms coincide).

    Args:
        z1, z2: (B, D) this rank's rows of view 1 and view 2.
        temperature: tau > 0.
        keys: (k1, k2), each (N, D): the two views gathered over ranks, or None.
    """
    b = z1.shape[0]
    n = b * get_world_size() if keys is None else keys[0].shape[0]
    ids = (torch.arange(b, device=z1.device) + get_rank() * b).repeat(2)
    gathered = None
    if keys is not None:
        world = n // b
        # the layout cl_infonce gathers cat([z1, z2]) in: per rank, its view 1 then its view 2
        all_z = torch.stack([k.view(world, b, -1) for k in keys], dim=1).reshape(2 * n, -1)
        all_ids = torch.arange(n, device=z1.device).view(world, b).repeat(1, 2).reshape(-1)
        gathered = (all_z, all_ids)
    # each anchor has one positive (its other view), where the "in" and "out" forms are the
    # same loss: "out" needs no check of that (a host read) and no (M, N) per-cluster sums
    return cl_infonce(torch.cat([z1, z2]), ids, temperature, form="out", num_clusters=n,
                      gathered=gathered)


def wcl_swap(
    v1: torch.Tensor,
    v2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    temperature: float = 0.1,
    form: str = "out",
    gather: bool = True,
    num_clusters: Optional[Tuple[int, int]] = None,
    keys: Optional[Views] = None,
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
        y1: (B,) integer weak labels computed from view 1, ids consistent across ranks;
            (N,), the labels of the whole gathered batch, when ``keys`` is given.
        y2: the same for view 2.
        temperature: tau > 0.
        form: ``"out"`` or ``"in"`` (see ``cl_infonce``).
        gather: contrast against all ranks' rows when torch.distributed is initialised.
        num_clusters: (C1, C2) when y1 and y2 are contiguous ids in [0, C1) and [0, C2)
            over the gathered batch (canonical weak labels are): saves ``torch.unique``.
        keys: (k1, k2), each (N, D): the two views gathered over ranks; then no
            collective runs.

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
    rows = v1.shape[0] if keys is None else keys[0].shape[0]
    if y1.shape != (rows,) or y2.shape != (rows,):
        what = f"B={rows}" if keys is None else f"N={rows} (the gathered batch)"
        raise ValueError(
            f"y1 and y2 must be 1-D with {what} entries, got {tuple(y1.shape)} "
            f"and {tuple(y2.shape)}"
        )
    c1, c2 = num_clusters if num_clusters is not None else (None, None)
    # both directions in one batched pass: view 1's rows supervised by y2, view 2's by y1
    if keys is None:
        return cl_infonce_groups([v1, v2], [y2, y1], temperature, form, [c2, c1], gather)
    local = slice(get_rank() * v1.shape[0], (get_rank() + 1) * v1.shape[0])
    return cl_infonce_groups([v1, v2], [y2[local], y1[local]], temperature, form, [c2, c1],
                             gathered=[(keys[0], y2), (keys[1], y1)])


def _small_crop_terms(small: torch.Tensor, large: Views, labels: Sequence[Optional[torch.Tensor]],
                      temperature: float, keys: Optional[Views]) -> torch.Tensor:
    """``sum_v mean_a l_v(a)`` over the large views v; see ``multicrop_swap`` for ``l_v``.
    ``labels[v]`` (N,) sets the positives of view v; None means the image alone."""
    batch = large[0].shape[0]
    if small.shape[0] % batch != 0:
        raise ValueError(f"small crops ({small.shape[0]} rows) are not a multiple of the "
                         f"batch ({batch})")
    q = F.normalize(small, dim=1)
    # the gathered-batch row of the image each local small crop is assigned to (crop-major)
    owners = (torch.arange(batch, device=small.device) + get_rank() * batch).repeat(
        small.shape[0] // batch)
    total = small.new_zeros(())
    for v, view in enumerate(large):
        k = F.normalize(gather_with_grad(view) if keys is None else keys[v], dim=1)
        logits = q @ k.T / temperature
        if labels[v] is None:
            total = total + F.cross_entropy(logits, owners)
            continue
        y = labels[v].to(small.device)
        positive = (y[owners][:, None] == y[None, :]).to(q.dtype)  # (S*B, N)
        per_anchor = -(positive * F.log_softmax(logits, dim=1)).sum(1) / positive.sum(1)
        total = total + per_anchor.mean()
    return total


def multicrop_nce(small: torch.Tensor, large: Views, temperature: float,
                  keys: Optional[Views] = None) -> torch.Tensor:
    """L_cNCE: each small crop must pick its own image among the large views of the batch,
    ``1/2 sum_{v=1,2} mean_a -log softmax_j(q_a . k^v_j / tau)[i(a)]`` (``multicrop_swap``'s
    ``l_v`` with the image alone as positive, averaged over the views).

    The denominator runs over all N large views of view v (the image's own view included).
    Under KNN multi-crop the crop is cut from a neighbour of i(a) yet still assigned to i(a):
    that is what adds neighbours as positives.

    Args:
        small: (S * B, D) local small-crop embeddings, crop-major (crop s of image b at row
            s * B + b, the order of ``torch.cat`` over the host's per-crop outputs).
        large: two (B, D) local large-view embeddings.
        temperature: tau > 0.
        keys: the two large views gathered over ranks, or None.

    Returns:
        Scalar; the mean over local anchors (DDP averaging gives the global mean).
    """
    return _small_crop_terms(small, large, (None,) * len(large), temperature, keys) / len(large)


def multicrop_swap(small: torch.Tensor, large: Views, labels: Views, temperature: float,
                   keys: Optional[Views] = None) -> torch.Tensor:
    """L_cswap: each small crop is supervised by the weak class of its image, swapped.

    With ``q_a`` a small crop assigned to image ``i(a)`` (its own image, or under KNN
    multi-crop the image whose neighbour it was cut from), ``k^v_j`` large view v of image j
    (normalised, gathered, N rows) and ``y^v`` the weak labels computed from view v::

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
        keys: the two large views gathered over ranks, or None.
    """
    return _small_crop_terms(small, large, (labels[1], labels[0]), temperature, keys)
