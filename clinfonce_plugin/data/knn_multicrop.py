"""KNN multi-crop of WCL (https://arxiv.org/abs/2110.04770, Sec. 3.4): the small crops of an
image are taken from its K nearest neighbours instead of from the image itself.

``KnnMultiCrop`` owns the whole lifecycle (the ``wcl`` method holds one as its ``knn``
submodule and calls it from its hooks):

- a feature bank: the backbone feature h of the first large crop of every image, written by
  dataset index from the batches of all ranks (``gather_indexed`` + ``write_bank``);
- the neighbour table: at epoch end, each image's K nearest neighbours in the bank (cosine,
  self excluded), computed on every rank from the same gathered bank and checked by
  fingerprint to be identical across ranks (``table_from_bank``,
  ``ensure_identical_across_ranks``); it is checkpointed with the model;
- ``NeighbourTable`` + ``KnnMultiCropDataset``: the table lives in shared memory, created
  before the dataloader workers start and updated in place, so (persistent) workers see
  every update; ``dataset[i]`` draws each small crop from a neighbour of i sampled uniformly
  from the K, seeded by (seed, epoch, i, crop), or from i itself while the table is inactive
  (the first ``warmup_epochs``: standard multi-crop).

Plain torch/numpy: no host import.
"""
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset

from clinfonce_plugin.clusters.neighbours import BACKENDS, knn_table
from clinfonce_plugin.data.indexed import host_target, resolve_index
from clinfonce_plugin.utils.distributed import (
    all_gather_no_grad,
    all_ranks_agree,
    get_world_size,
    is_dist,
)

__all__ = [
    "KnnMultiCrop",
    "split_crop_pipelines",
    "NeighbourTable",
    "KnnMultiCropDataset",
    "gather_indexed",
    "write_bank",
    "table_from_bank",
    "ensure_identical_across_ranks",
    "table_checksum",
]


class NeighbourTable:
    """(N, K) neighbour indices + (active, epoch) flags in shared memory.

    Create it in the main process *before* the dataloader workers start (forked or spawned
    workers then map the same memory); ``update`` and ``set_state`` write in place, so every
    worker, persistent or not, reads the new values at its next item.

    Args:
        num_samples: N, the size of the training set.
        k: neighbours per image.
    """

    def __init__(self, num_samples: int, k: int) -> None:
        if num_samples < 1 or k < 1:
            raise ValueError(f"NeighbourTable needs num_samples >= 1 and k >= 1, "
                             f"got {num_samples} and {k}")
        # until a table is computed every image is its own neighbour (= standard multi-crop)
        self.neighbours = torch.arange(num_samples).unsqueeze(1).repeat(1, k).share_memory_()
        self.state = torch.zeros(2, dtype=torch.int64).share_memory_()  # [active, epoch]

    @property
    def num_samples(self) -> int:
        return self.neighbours.shape[0]

    @property
    def k(self) -> int:
        return self.neighbours.shape[1]

    @property
    def active(self) -> bool:
        return bool(self.state[0])

    @property
    def epoch(self) -> int:
        return int(self.state[1])

    def set_state(self, active: bool, epoch: int) -> None:
        self.state.copy_(torch.tensor([int(bool(active)), int(epoch)]))

    def update(self, neighbours: torch.Tensor, active: bool, epoch: int) -> None:
        """Copies a new (N, K) table in place and sets the flags."""
        if tuple(neighbours.shape) != tuple(self.neighbours.shape):
            raise ValueError(f"neighbour table must be {tuple(self.neighbours.shape)}, "
                             f"got {tuple(neighbours.shape)}")
        self.neighbours.copy_(neighbours.detach().to("cpu", torch.int64))
        self.set_state(active, epoch)

    def sources(self, index: int, num: int, seed: int = 0) -> List[int]:
        """Images the ``num`` small crops of image ``index`` are cut from this epoch.

        Inactive: ``index`` itself ``num`` times. Active: one neighbour per crop, drawn
        uniformly (with replacement) from the K, by a generator seeded with
        ``(seed, epoch, index)`` -- the same choice in every worker and on every rank.
        """
        if not self.active or num == 0:
            return [int(index)] * num
        rng = np.random.default_rng([int(seed), self.epoch, int(index)])
        picks = rng.integers(0, self.k, size=num)
        row = self.neighbours[int(index)]
        return [int(row[p]) for p in picks]


class KnnMultiCropDataset(Dataset):
    """``base[i] -> (image, target)`` into ``self[i] -> (i, [large crops..., small crops...],
    target)``, the small crops taken from i's neighbours when the table is active.

    Args:
        base: map-style dataset of (image, target); target None or negative = unknown (-1).
        large_transforms: one callable per large crop (image -> tensor), applied to image i.
        small_transforms: one callable per small crop, applied to the image chosen by
            ``table.sources(i, len(small_transforms), seed)``.
        table: the shared ``NeighbourTable`` (N = len(base)).
        seed: base seed of the neighbour choice.
    """

    def __init__(self, base: Dataset, large_transforms: Sequence[Callable[[Any], torch.Tensor]],
                 small_transforms: Sequence[Callable[[Any], torch.Tensor]],
                 table: NeighbourTable, seed: int = 0) -> None:
        if len(large_transforms) == 0:
            raise ValueError("KnnMultiCropDataset needs at least one large-crop transform")
        for t in list(large_transforms) + list(small_transforms):
            if not callable(t):
                raise ValueError(f"crop transforms must be callable, got {type(t).__name__}")
        if table.num_samples != len(base):
            raise ValueError(f"neighbour table has {table.num_samples} rows but the dataset "
                             f"has {len(base)} images")
        self.base = base
        self.large_transforms = list(large_transforms)
        self.small_transforms = list(small_transforms)
        self.table = table
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Tuple[int, List[torch.Tensor], int]:
        i = resolve_index(i, len(self.base))
        image, target = self.base[i]
        crops = [t(image) for t in self.large_transforms]
        images = {i: image}  # each neighbour image is read once per item
        for transform, src in zip(self.small_transforms,
                                  self.table.sources(i, len(self.small_transforms), self.seed)):
            if src not in images:
                images[src] = self.base[src][0]
            crops.append(transform(images[src]))
        return i, crops, host_target(target)


def gather_indexed(feats: torch.Tensor, indexes: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ranks' (features, dataset indexes) in rank order, without gradient.

    Args:
        feats: (n, F) this rank's features; n may differ between ranks (rows are padded
            for the all_gather and the padding removed).
        indexes: (n,) their dataset indexes.

    Returns:
        ((M, F), (M,)) with M the total number of rows over ranks; the inputs themselves in
        a single process.
    """
    if feats.ndim != 2 or indexes.shape != (feats.shape[0],):
        raise ValueError(f"feats must be (n, F) and indexes (n,), got {tuple(feats.shape)} "
                         f"and {tuple(indexes.shape)}")
    feats = feats.detach()
    indexes = indexes.detach().long().to(feats.device)
    if not is_dist() or get_world_size() == 1:
        return feats, indexes
    n = feats.shape[0]
    sizes = all_gather_no_grad(torch.tensor([n], device=feats.device))
    top = int(sizes.max())
    if top != n:
        feats = torch.cat([feats, feats.new_zeros(top - n, feats.shape[1])])
        indexes = torch.cat([indexes, indexes.new_full((top - n,), -1)])
    all_feats = all_gather_no_grad(feats)
    all_idx = all_gather_no_grad(indexes)
    keep = all_idx >= 0
    return all_feats[keep], all_idx[keep]


@torch.no_grad()
def write_bank(bank: torch.Tensor, filled: torch.Tensor, feats: torch.Tensor,
               indexes: torch.Tensor) -> None:
    """Writes rows ``feats`` at ``indexes`` of ``bank`` and marks them ``filled``, in place.

    An index occurring more than once (DistributedSampler pads an epoch by repeating
    images) is written once, from its first occurrence, so that the bank does not depend
    on the order of duplicate writes (on GPUs that order is not deterministic).

    Args:
        bank: (N, F) feature bank.
        filled: (N,) bool, rows written at least once.
        feats: (M, F) features to write.
        indexes: (M,) their rows in ``bank``.
    """
    if feats.ndim != 2 or feats.shape[1] != bank.shape[1] or indexes.shape != feats.shape[:1]:
        raise ValueError(f"cannot write feats {tuple(feats.shape)} at indexes "
                         f"{tuple(indexes.shape)} into a bank {tuple(bank.shape)}")
    if indexes.numel() == 0:
        return
    indexes = indexes.to(bank.device).long()
    lo, hi = int(indexes.min()), int(indexes.max())
    if lo < 0 or hi >= bank.shape[0]:
        raise ValueError(f"indexes must lie in [0, {bank.shape[0]}), got [{lo}, {hi}]")
    uniq, inverse = torch.unique(indexes, return_inverse=True)
    positions = torch.arange(indexes.numel(), device=indexes.device)
    first = torch.full((uniq.numel(),), indexes.numel(), device=indexes.device, dtype=torch.long)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    bank[uniq] = feats[first].to(bank.dtype)
    filled[uniq] = True


@torch.no_grad()
def table_from_bank(bank: torch.Tensor, filled: torch.Tensor, k: int,
                    backend: str = "faiss") -> torch.Tensor:
    """Each image's ``k`` nearest neighbours (cosine, self excluded) among the filled rows.

    Rows never filled (images not seen yet, e.g. the ``drop_last`` remainder of the first
    collected epoch) get themselves as all k neighbours -- standard multi-crop for them --
    and are nobody's neighbour.

    Args:
        bank: (N, F) features.
        filled: (N,) bool.
        k: neighbours per image.
        backend: "faiss" or "torch" (see ``clusters.neighbours.knn_table``).

    Returns:
        (N, k) int64 on ``bank.device``.
    """
    n = bank.shape[0]
    if filled.shape != (n,):
        raise ValueError(f"filled must be ({n},), got {tuple(filled.shape)}")
    table = torch.arange(n, device=bank.device).unsqueeze(1).repeat(1, k)
    rows = filled.to(bank.device).nonzero().squeeze(1)
    if rows.numel() <= k:
        warnings.warn(f"KNN multi-crop: only {rows.numel()} images have features, need more "
                      f"than k={k}; keeping standard multi-crop for this epoch")
        return table
    local = knn_table(bank[rows], k, backend=backend)  # positions within rows
    table[rows] = rows[local]
    return table


def table_checksum(table: torch.Tensor) -> torch.Tensor:
    """(2,) int64 fingerprint of a table: its sum and a position-weighted sum (int64
    arithmetic wraps around deterministically, which is all a fingerprint needs)."""
    flat = table.reshape(-1).long()
    weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.long)
    return torch.stack([flat.sum(), (flat * weights).sum()])


def ensure_identical_across_ranks(table: torch.Tensor) -> Tuple[torch.Tensor, bool]:
    """Checks that every rank computed the same table.

    Every rank computes the table from the same gathered bank, so the tables agree; this
    compares their fingerprints. On a mismatch (e.g. a non-deterministic GPU search with
    exact ties) rank 0's table is broadcast, with a warning, so the ranks never sample
    from different tables.

    Returns:
        (the table every rank now holds, True if they already agreed).
    """
    if not is_dist() or get_world_size() == 1:
        return table, True
    if all_ranks_agree(table_checksum(table)):  # the fingerprint, not the N x K table
        return table, True
    warnings.warn("KNN multi-crop: the ranks computed different neighbour tables; "
                  "using rank 0's")
    table = table.contiguous().clone()
    dist.broadcast(table, src=0)
    return table, False


def _sync_after_load(module: "KnnMultiCrop", incompatible_keys: Any) -> None:
    module.sync_shared()


class KnnMultiCrop(nn.Module):
    """The KNN multi-crop of one training set of N images: bank, table, shared copy.

    The method calls, with the epoch of its trainer:

    - ``make_dataset(base, large, small)`` once, before the dataloader workers exist: the
      shared ``NeighbourTable`` and the ``KnnMultiCropDataset`` reading it;
    - ``observe(feats, indexes, epoch)`` every step: all ranks' features enter the bank, in
      the epochs whose end computes a table that gets used (``epoch >= warmup_epochs - 1``);
    - ``epoch_end(epoch)``: the table of the bank becomes the table of epoch + 1 (identical
      on every rank) and the shared table is updated before the next epoch's workers start;
      returns statistics to log;
    - ``epoch_start(epoch)``: the shared table is active from epoch ``warmup_epochs`` on.

    State: the buffers ``neighbours`` (N, K), ``valid`` and ``epoch`` (the epoch the table
    is meant for) are checkpointed with the model; loading them (resume,
    ``load_state_dict``) reaches the shared table. The bank (N, F) is a plain tensor on the
    features' device: large, not checkpointed, not broadcast by DDP.

    Args:
        num_samples: N, the size of the training set.
        k: neighbours per image, 1 <= k < N.
        warmup_epochs: epochs of standard multi-crop before the first table is used (>= 0;
            the first table needs the features of one epoch).
        backend: neighbour search, "faiss" or "torch" (``clusters.neighbours.knn_table``).
        seed: seed of the neighbour choice (with the epoch and the index).
    """

    def __init__(self, num_samples: int, k: int, warmup_epochs: int, backend: str = "faiss",
                 seed: int = 0) -> None:
        super().__init__()
        if k < 1 or k >= num_samples:
            raise ValueError(f"knn_k={k} must be smaller than the {num_samples} training "
                             f"images and >= 1")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}. Choose from {sorted(BACKENDS)}")
        self.num_samples, self.k, self.warmup_epochs = num_samples, k, warmup_epochs
        self.backend, self.seed = backend, seed
        # until a table is computed every image is its own neighbour (= standard multi-crop)
        self.register_buffer("neighbours", torch.arange(num_samples).unsqueeze(1).repeat(1, k))
        self.register_buffer("valid", torch.zeros((), dtype=torch.bool))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.bank: Optional[torch.Tensor] = None
        self.filled: Optional[torch.Tensor] = None
        self.shared: Optional[NeighbourTable] = None
        self.targets: Optional[torch.Tensor] = None  # of the training set, for the purity log
        self.register_load_state_dict_post_hook(_sync_after_load)

    def legacy_keys_hook(self, module: nn.Module, state_dict: Dict[str, Any], prefix: str,
                         *args: Any) -> None:
        """Load-state-dict pre-hook of the method that holds this module as ``knn``: its
        checkpoints from before this class existed name the buffers ``knn_neighbours``,
        ``knn_valid`` and ``knn_epoch``."""
        for name, _ in self.named_buffers():
            if f"{prefix}knn_{name}" in state_dict:
                state_dict[f"{prefix}knn.{name}"] = state_dict.pop(f"{prefix}knn_{name}")

    def collecting(self, epoch: int) -> bool:
        return epoch + 1 >= self.warmup_epochs

    def active(self, epoch: int) -> bool:
        return bool(self.valid) and epoch >= self.warmup_epochs

    def make_dataset(self, base: Dataset, large_transforms: Sequence[Callable[[Any], torch.Tensor]],
                     small_transforms: Sequence[Callable[[Any], torch.Tensor]]
                     ) -> "KnnMultiCropDataset":
        if len(base) != self.num_samples:
            raise ValueError(f"the training set has {len(base)} images but the KNN table was "
                             f"built for {self.num_samples}")
        self.shared = NeighbourTable(self.num_samples, self.k)
        self.sync_shared()
        targets = getattr(base, "targets", None)
        if targets is not None:
            self.targets = torch.as_tensor(list(targets), dtype=torch.long)
        return KnnMultiCropDataset(base, large_transforms, small_transforms, self.shared,
                                   seed=self.seed)

    def sync_shared(self) -> None:
        """Buffers -> the shared table read by the dataloader workers."""
        if self.shared is not None:
            epoch = int(self.epoch)
            self.shared.update(self.neighbours, self.active(epoch), epoch)

    @torch.no_grad()
    def observe(self, feats: torch.Tensor, indexes: torch.Tensor, epoch: int) -> None:
        """Stores this step's (B, F) features of all ranks by their (B,) dataset indexes."""
        if not self.collecting(epoch):
            return
        feats, indexes = gather_indexed(feats, indexes)
        if self.bank is None or self.bank.device != feats.device:
            self.bank = feats.new_zeros(self.num_samples, feats.shape[1], dtype=torch.float32)
            self.filled = torch.zeros(self.num_samples, dtype=torch.bool, device=feats.device)
        write_bank(self.bank, self.filled, feats.float(), indexes)

    def epoch_start(self, epoch: int) -> None:
        if self.shared is not None:
            self.shared.set_state(self.active(epoch), epoch)

    @torch.no_grad()
    def epoch_end(self, epoch: int) -> Dict[str, torch.Tensor]:
        stats: Dict[str, torch.Tensor] = {}
        if self.collecting(epoch) and self.bank is not None:
            table = table_from_bank(self.bank, self.filled, self.k, self.backend)
            table, _ = ensure_identical_across_ranks(table)
            self.neighbours.copy_(table.to(self.neighbours.device))
            self.valid.fill_(True)
            stats = self._table_stats()
        # set before the next epoch's iterator starts the workers' prefetching
        self.epoch.fill_(epoch + 1)
        self.sync_shared()
        return stats

    def _table_stats(self) -> Dict[str, torch.Tensor]:
        stats = {"knn_filled_fraction": self.filled.float().mean()}
        if self.targets is not None:
            t = self.targets.to(self.neighbours.device)
            nb = t[self.neighbours]
            known = (t[:, None] != -1) & (nb != -1) & self.filled[:, None].to(nb.device)
            if bool(known.any()):
                stats["knn_neighbour_purity"] = (nb == t[:, None])[known].float().mean()
        return stats


def split_crop_pipelines(augmentations: Sequence[Any], build: Callable[[Any], Any]
                         ) -> Tuple[List[Any], List[Any]]:
    """Per-crop transforms of the host's ``augmentations`` list: large crops (the first
    pipeline's ``crop_size``) then small ones, in the host's crop order.

    Args:
        augmentations: pipeline configs with ``crop_size`` and ``num_crops``.
        build: pipeline config -> transform (the host's ``build_transform_pipeline``).
    """
    big = augmentations[0].crop_size
    large: List[Any] = []
    small: List[Any] = []
    for i, aug in enumerate(augmentations):
        transform = build(aug)
        if aug.crop_size == big:
            if small:
                raise ValueError(f"augmentations[{i}] is a large-crop pipeline listed "
                                 f"after a small-crop one; list large crops first")
            large += [transform] * aug.num_crops
        else:
            small += [transform] * aug.num_crops
    return large, small
