"""Index wrapping: turns any (image, target) dataset into the host batch format.

The host (solo-learn or the bundled runtime) trains on batches
``(indexes, [crop_1 .. crop_n], targets)``; the index travels with every sample so that
cluster providers can look up per-sample cluster ids (``provider(indexes)``).
"""
from typing import Any, Callable, List, Tuple

import torch
from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wraps ``base[i] -> (image, target)`` into ``self[i] -> (i, crops, target)``.

    Args:
        base: any map-style dataset returning (image, target); target may be None or a
            negative number when unknown (reported as -1).
        transform: image -> list of n crop tensors (e.g. the host's NCropAugmentation);
            a transform returning a single tensor gives a one-crop list.

    With torch's default collate a batch of B samples is
    ``(indexes: (B,) int64, [crop_1: (B, C, H, W), ..., crop_n], targets: (B,) int64)``.
    """

    def __init__(self, base: Dataset, transform: Callable[[Any], Any]) -> None:
        if not callable(transform):
            raise ValueError(
                f"IndexedDataset needs a callable transform returning a list of crop tensors, "
                f"got {type(transform).__name__}"
            )
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Tuple[int, List[torch.Tensor], int]:
        i = resolve_index(i, len(self.base))
        image, target = self.base[i]
        crops = self.transform(image)
        if isinstance(crops, torch.Tensor):
            crops = [crops]
        elif isinstance(crops, (list, tuple)) and all(isinstance(c, torch.Tensor) for c in crops):
            crops = list(crops)
        else:
            raise ValueError(
                f"transform must return a tensor or a list of tensors, got {type(crops).__name__}"
            )
        return i, crops, host_target(target)


def resolve_index(i: int, n: int) -> int:
    """A dataset index as the non-negative lookup key reported in the batch."""
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for dataset of size {n}")
    return int(i) % n


def host_target(target: Any) -> int:
    """The host's target convention: an int >= 0, or -1 for unknown (None or negative)."""
    return -1 if target is None or int(target) < 0 else int(target)


class TransformedImages(Dataset):
    """``base[i] = (image, target)`` -> ``(transform(image), target)``; index i unchanged
    (evaluation, features, the k-means embedding pass)."""

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, target = self.base[i]
        return self.transform(image), target
