"""The runtime built-ins' contrastive losses: the standard masked NT-Xent / SupCon ("in") form,
and MoCo's InfoNCE against a queue of negatives.

NT-Xent is kept deliberately straightforward (B x B masks), as solo-learn's
``simclr_loss_func``: it is the baseline the plugin's cluster loss is compared against.
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


def moco_infonce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor,
                 temperature: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE: -mean_n log( e^{q_n.k_n/t} / (e^{q_n.k_n/t} + sum_j e^{q_n.u_j/t}) ).

    query: (N, D) this rank's queries; key: (N, D) the keys of the same images from the
    momentum encoder (no gradient flows to them); queue: (D, K) the negatives u_j. Rows are
    used as given (the method L2-normalises them). Every sample's term is local, so under DDP
    the mean of the ranks' losses is the loss of the whole batch.
    """
    if temperature <= 0:
        raise ValueError(f"Illegal temperature: {temperature}")
    if query.shape != key.shape or query.dim() != 2 or queue.shape[0] != query.shape[1]:
        raise ValueError(f"expected query and key (N, D) and queue (D, K), got "
                         f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(queue.shape)}")
    pos = (query * key.detach()).sum(1, keepdim=True)
    neg = query @ queue.detach()
    logits = torch.cat([pos, neg], dim=1) / temperature
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()
