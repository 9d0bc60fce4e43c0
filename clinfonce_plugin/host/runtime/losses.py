"""The runtime built-ins' contrastive loss: the standard masked NT-Xent / SupCon ("in") form.

Kept deliberately straightforward (B x B masks), as solo-learn's ``simclr_loss_func``: it is
the baseline the plugin's cluster loss is compared against.
"""
import torch
import torch.nn.functional as F

from clinfonce_plugin.utils.distributed import all_gather_no_grad, gather_with_grad, get_rank


def nt_xent_masked(z: torch.Tensor, indexes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """-mean_a log( sum_{p: idx_p = idx_a, p != a} e^{s_ap} / sum_{j != a} e^{s_aj} ).

    z: (M, D) this rank's rows; indexes: (M,) instance ids (SimCLR) or labels (SupCon).
    """
    z = F.normalize(z, dim=-1)
    z_all = gather_with_grad(z)
    idx_all = all_gather_no_grad(indexes)
    sim = torch.exp(z @ z_all.T / temperature)
    offset = z.size(0) * get_rank()  # where this rank's rows sit in the gathered batch
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[torch.arange(z.size(0)), offset + torch.arange(z.size(0))] = True
    pos_mask = (indexes[:, None] == idx_all[None, :]) & ~self_mask
    neg_mask = indexes[:, None] != idx_all[None, :]
    pos = (sim * pos_mask).sum(1)
    neg = (sim * neg_mask).sum(1)
    return -torch.log(pos / (pos + neg)).mean()
