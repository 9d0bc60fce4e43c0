"""WCL's swapped supervised contrastive loss on weak labels."""
import torch

from clinfonce_plugin.losses.cl_infonce import cl_infonce


def wcl_swap(
    v1: torch.Tensor,
    v2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    temperature: float = 0.1,
    form: str = "out",
    gather: bool = True,
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
    loss_1 = cl_infonce(v1, y2, temperature=temperature, form=form, gather=gather)
    loss_2 = cl_infonce(v2, y1, temperature=temperature, form=form, gather=gather)
    return loss_1 + loss_2
