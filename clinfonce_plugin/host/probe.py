"""The online probe's loss and accuracies over the samples whose target is known (target
!= -1), shared by both hosts; plain torch. Nothing is read back to the host: on a GPU each
read would wait for the device's queue in every training step."""
from typing import List, Sequence

import torch
import torch.nn.functional as F


def accuracy_at_k(logits: torch.Tensor, targets: torch.Tensor,
                  top_k: Sequence[int]) -> List[torch.Tensor]:
    """Top-k accuracies over the samples whose target is known (target != -1); 0 when none
    is. Nothing is read back to the host (on a GPU a read would wait for its queue)."""
    known = (targets != -1).sum().clamp_min(1)
    # an unknown target (-1) never equals a predicted class index
    hit = logits.topk(max(top_k), dim=1).indices.eq(targets[:, None])
    return [hit[:, :k].any(dim=1).sum() / known for k in top_k]


def probe_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the samples whose target is known (target != -1); 0, with a zero
    gradient, when none is (``cross_entropy``'s mean would be 0/0). Reads nothing back to
    the host."""
    known = (targets != -1).sum().clamp_min(1)
    return F.cross_entropy(logits, targets, ignore_index=-1, reduction="sum") / known
