"""Downstream labels as clusters: Cl-InfoNCE reduces to supervised contrastive learning.

Implements the label special case of Cl-InfoNCE (https://arxiv.org/abs/2202.06670,
Sec. 3.2), i.e. SupCon (https://arxiv.org/abs/2004.11362).
"""
import numpy as np

from .base import ClusterProvider, contiguous


def group_with_singletons(keys: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Groups samples by key; samples whose key is unknown each get their own cluster.

    Args:
        keys: (N,) sortable keys (ints or strings); ignored where ``known`` is False.
        known: (N,) bool.

    Returns:
        (N,) int64: known samples get 0..K-1 in sorted key order, unknown samples get
        K, K+1, ... in dataset order.
    """
    known = np.asarray(known, dtype=bool)
    ids = np.empty(known.shape[0], dtype=np.int64)
    known_ids = contiguous(np.asarray(keys)[known])
    ids[known] = known_ids
    start = int(known_ids.max()) + 1 if known_ids.size else 0
    ids[~known] = np.arange(start, start + int((~known).sum()), dtype=np.int64)
    return ids


def checked_labels(owner: str, labels) -> np.ndarray:
    """Returns ``labels`` as (N,) int64 or raises ValueError (missing, not integer, < -1)."""
    if labels is None:
        raise ValueError(
            f"{owner}: needs SampleInfo.labels (one class index per sample), "
            "but the dataset provides none"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{owner}: SampleInfo.labels must be (N,) integers, "
            f"got shape {labels.shape} dtype {labels.dtype}"
        )
    if labels.size and labels.min() < -1:
        where = int(np.argmin(labels))
        raise ValueError(
            f"{owner}: label {int(labels[where])} at index {where}; "
            "labels are class indexes >= 0, or -1 for unknown"
        )
    return labels.astype(np.int64)


def require_some_known(owner: str, labels: np.ndarray) -> None:
    """ValueError when no sample has a label: every cluster would be a singleton, i.e.
    SimCLR under another name."""
    if labels.size and (labels < 0).all():
        raise ValueError(
            f"{owner}: no sample has a label (all {labels.size} are -1, unknown), so every "
            f"image would be a cluster of its own (SimCLR); label the images (dataset custom: "
            f"class folders <root>/<class>/<image> or a 'label' column in data.annotations) "
            f"or use the 'instance', 'attributes' or 'kmeans' provider")


class LabelsProvider(ClusterProvider):
    """Implements label clusters (https://arxiv.org/abs/2202.06670, Sec. 3.2; SupCon).

    ``ids = contiguous(labels)``. A sample with label -1 (unknown) gets a singleton
    cluster of its own, so it is contrasted like in SimCLR instead of being grouped with
    every other unlabelled sample. Takes no parameters.
    """

    name = "labels"
    PARAMS: dict = {}

    def _build(self) -> np.ndarray:
        labels = checked_labels(self.name, self.info.labels)
        require_some_known(self.name, labels)
        return group_with_singletons(labels, labels >= 0)

    def _describe_extra(self) -> str:
        unknown = int((np.asarray(self.info.labels) < 0).sum())
        return f"{unknown} samples with unknown label (singletons)" if unknown else ""
