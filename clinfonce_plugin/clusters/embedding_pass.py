"""The embedding pass of dynamic cluster providers, and what is measured on its result.

Implements the "embed the whole training set" step of Cl-InfoNCE's K-means variant
(https://arxiv.org/abs/2202.06670, Sec. 4.4, Algorithm 1): one deterministic,
augmentation-free pass over the training set, sharded over the ranks and gathered so that
every rank ends with the same (N, d) matrix in dataset order. The I(Z;T) / H(Z|T) of the
resulting clusters are computed from the same assignments (Fig. 5 right), no second pass.
"""
import contextlib
import math
from typing import Any, Callable, ContextManager, Dict, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from clinfonce_plugin.clusters.components import purity
from clinfonce_plugin.metrics.information import conditional_entropy, mutual_information
from clinfonce_plugin.utils.distributed import all_gather_no_grad, get_rank, get_world_size
from clinfonce_plugin.utils.loading import loader_options, to_device


def shard_indexes(n: int, rank: int, world_size: int) -> range:
    """Dataset indexes embedded by ``rank``: rank, rank + W, rank + 2W, ... (< n)."""
    return range(rank, n, world_size)


@torch.no_grad()
def embed_dataset(embed: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, dim: int,
                  batch_size: int, num_workers: int = 0, device: Optional[torch.device] = None,
                  forward_context: Optional[Callable[[], ContextManager]] = None) -> torch.Tensor:
    """Embeds every item of ``dataset`` once, sharded over ranks, gathered on every rank.

    Each rank embeds ``shard_indexes(N, rank, W)`` in order (no shuffling, no augmentation:
    the dataset's transform must be deterministic), pads its block to ceil(N / W) rows, and
    an all_gather of the blocks and of their dataset indexes puts row i of the result at
    dataset index i.

    Args:
        embed: (B, C, H, W) images -> (B, dim) embeddings (called under no_grad).
        dataset: items ``(image_tensor, target)``; item i is dataset index i.
        dim: embedding dimension (also sizes the padding of ranks without rows).
        batch_size: images per forward.
        num_workers: dataloader workers.
        device: where images go and the result lives (default: CPU).
        forward_context: e.g. the trainer's precision context (autocast); default none.

    Returns:
        (N, dim) float32 on ``device``, identical on every rank.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    n = len(dataset)
    world, rank = get_world_size(), get_rank()
    mine = shard_indexes(n, rank, world)
    rows = math.ceil(n / world)  # the same block size on every rank: all_gather needs it
    block = torch.zeros(rows, dim, dtype=torch.float32, device=device)
    where = torch.full((rows,), -1, dtype=torch.long, device=device)
    where[: len(mine)] = torch.as_tensor(list(mine), dtype=torch.long, device=device)
    loader = DataLoader(Subset(dataset, list(mine)), batch_size=batch_size, shuffle=False,
                        drop_last=False, **loader_options(num_workers, device.type == "cuda",
                                                          persistent=False))
    context = forward_context or contextlib.nullcontext
    filled = 0
    for images, _ in loader:
        with context():
            out = embed(to_device(images, device))
        if out.ndim != 2 or out.shape[1] != dim:
            raise ValueError(f"embedding pass: expected ({images.shape[0]}, {dim}) embeddings, "
                             f"got shape {tuple(out.shape)}")
        block[filled: filled + out.shape[0]] = out.float()
        filled += out.shape[0]
    if filled != len(mine):
        raise ValueError(f"embedding pass: rank {rank} embedded {filled} of {len(mine)} images")
    gathered = all_gather_no_grad(block)
    indexes = all_gather_no_grad(where)
    valid = indexes >= 0
    out = torch.empty(n, dim, dtype=torch.float32, device=device)
    out[indexes[valid]] = gathered[valid]
    if int(valid.sum()) != n:
        raise RuntimeError(f"embedding pass gathered {int(valid.sum())} rows for {n} images")
    return out


def label_metrics(ids: np.ndarray, labels: Optional[np.ndarray]) -> Dict[str, float]:
    """I(Z;T) and H(Z|T) in bits, and the purity, of cluster ids Z against labels T (label -1
    is ignored).

    Returns:
        ``{"kmeans_num_clusters": K}`` plus ``"kmeans_mi"``, ``"kmeans_cond_entropy"`` and
        ``"kmeans_purity"`` (fraction of images whose cluster's majority label is theirs)
        when at least one label is known.
    """
    ids = np.asarray(ids)
    out = {"kmeans_num_clusters": float(np.unique(ids).size)}
    if labels is None:
        return out
    labels = np.asarray(labels)
    known = labels != -1
    if known.any():
        out["kmeans_mi"] = mutual_information(ids[known], labels[known])
        out["kmeans_cond_entropy"] = conditional_entropy(ids[known], labels[known])
        out["kmeans_purity"] = purity(torch.as_tensor(ids[known]), torch.as_tensor(labels[known]))
    return out
