"""Base class of cluster providers: a table sample index -> cluster id, held as a buffer.

A provider turns what a dataset knows about its samples (``SampleInfo``) into one
cluster id per sample. Cl-InfoNCE (https://arxiv.org/abs/2202.06670) treats all views
whose ids are equal as positives, so the provider alone decides what the loss learns.
"""
import os
import sys
from collections import Counter
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from clinfonce_plugin.utils import devices
from clinfonce_plugin.utils.markers import REQUIRED

from .sample_info import SampleInfo


def contiguous(ids) -> np.ndarray:
    """Remaps arbitrary values to 0..K-1, in sorted order of the original values.

    Args:
        ids: (N,) integers (or any sortable values, e.g. strings).

    Returns:
        (N,) int64 where equal inputs get equal outputs and the smallest value gets 0.
    """
    values = np.asarray(ids)
    if values.ndim != 1:
        raise ValueError(f"cluster ids must be one-dimensional, got shape {values.shape}")
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def check_int(owner: str, name: str, value: Any, minimum: Optional[int] = None,
              maximum: Optional[int] = None, hint: str = "") -> int:
    """Returns ``value`` as int or raises ValueError naming the parameter and the value."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok:
        value = int(value)
        ok = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        if minimum is not None and maximum is not None:
            want = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            want = f"an integer >= {minimum}"
        else:
            want = "an integer"
        raise ValueError(f"{owner}: parameter {name!r} must be {want}{hint}, got {value!r}")
    return value


def resolve_path(owner: str, name: str, path: Any, root: Optional[str]) -> str:
    """Finds a file: absolute as given, relative against ``root`` first, then the cwd.

    Raises:
        ValueError: ``path`` is not a non-empty string.
        FileNotFoundError: no candidate exists; the message lists every place tried.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{owner}: parameter {name!r} must be a file path, got {path!r}")
    path = os.path.expanduser(str(path))
    candidates: List[str] = []
    if not os.path.isabs(path) and root:
        candidates.append(os.path.join(os.path.expanduser(str(root)), path))
    candidates.append(path)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"{owner}: {name} {path!r} not found; looked in {[os.path.abspath(c) for c in candidates]}"
    )


class ClusterProvider(nn.Module):
    """Maps dataset indexes 0..N-1 to cluster ids 0..K-1; the one owner of those ids.

    The ids are the buffer ``ids``, so they move with the model (``.to(device)``) and are
    saved and loaded with its ``state_dict`` (key ``<submodule name>.ids``); a method registers
    its provider as a submodule and looks a batch up with ``provider(indexes)``.

    Subclasses set ``name`` (the registry key), ``PARAMS`` (parameter -> default, with
    ``REQUIRED`` for parameters without a default) and implement ``_build()``, which
    reads ``self.info`` and ``self.params``, validates values and returns (N,) ids.

    Attributes:
        ids: (N,) int64 buffer, the cluster id of each dataset index, contiguous 0..K-1.
        info: the ``SampleInfo`` the ids were built from.
        params: the resolved parameters (user values over ``PARAMS`` defaults).
    """

    name: str = "base"
    PARAMS: Dict[str, Any] = {}
    dynamic = False

    def __init__(self, info: SampleInfo, **params: Any) -> None:
        super().__init__()
        if not isinstance(info, SampleInfo):
            raise ValueError(
                f"{self.name}: expected a SampleInfo, got {type(info).__name__}"
            )
        self.info = info
        self.params = self._resolve_params(params)
        self.register_buffer("ids", torch.zeros(info.num_samples, dtype=torch.long))
        self._set_ids(self._build())

    # ----------------------------------------------------------------- parameters
    def _resolve_params(self, params: Dict[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            valid = sorted(self.PARAMS) if self.PARAMS else "none (it takes no parameters)"
            raise ValueError(
                f"{self.name}: unknown parameter(s) {unknown}. Valid parameters: {valid}"
            )
        resolved = {key: params.get(key, default) for key, default in self.PARAMS.items()}
        missing = sorted(key for key, value in resolved.items() if value is REQUIRED)
        if missing:
            raise ValueError(
                f"{self.name}: missing required parameter(s) {missing}. "
                f"Parameters and defaults: {self.PARAMS}"
            )
        return resolved

    def _build(self) -> np.ndarray:
        """Returns the (N,) cluster ids; subclasses implement it."""
        raise NotImplementedError

    # ----------------------------------------------------------------------- ids
    def _checked_ids(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` as (N,) int64 after checking shape, dtype and contiguity 0..K-1."""
        ids = np.asarray(ids)
        n = self.info.num_samples
        if ids.shape != (n,):
            raise ValueError(f"{self.name}: built ids of shape {ids.shape}, expected ({n},)")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{self.name}: built ids of dtype {ids.dtype}, expected integers")
        ids = ids.astype(np.int64)
        k = int(ids.max()) + 1
        if ids.min() != 0 or np.unique(ids).size != k:
            raise ValueError(f"{self.name}: built ids are not contiguous 0..K-1")
        if k == 1 and n > 1:
            # legal, but every pair of images becomes a positive: say so where it is seen
            print(f"warning: cluster provider {self.name!r} put all {n} images in one "
                  f"cluster: every pair is a positive and the cluster loss cannot separate "
                  f"images; check its parameters", file=sys.stderr)
        return ids

    def _set_ids(self, ids: np.ndarray) -> None:
        """Checks new ids and writes them into the buffer in place (on its device); dynamic
        providers call it again at every refresh."""
        ids = self._checked_ids(ids)
        self.ids.copy_(torch.from_numpy(ids))
        self._num_clusters = int(ids.max()) + 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # the ids changed under the module: K follows them (ids are contiguous: max + 1)
        self._num_clusters = int(self.ids.max()) + 1 if self.ids.numel() else 0

    # --------------------------------------------------------------- granularities
    @property
    def num_granularities(self) -> int:
        """How many clusterings of the samples the provider holds (several numbers of k-means
        clusters); 1 for every static provider, whose one clustering is ``ids``."""
        return 1

    def granularity_ids(self, granularity: int) -> torch.Tensor:
        """(N,) ids of clustering ``granularity`` (0 .. num_granularities - 1)."""
        if granularity != 0:
            raise IndexError(f"{self.name}: granularity {granularity} out of range for 1")
        return self.ids

    def granularity_num_clusters(self, granularity: int) -> int:
        """K of clustering ``granularity``."""
        if granularity != 0:
            raise IndexError(f"{self.name}: granularity {granularity} out of range for 1")
        return self.num_clusters

    @property
    def num_clusters(self) -> int:
        """K, the number of distinct cluster ids, derived from the ids whenever they are
        written (build, refresh, checkpoint load): the training step reads it without an
        N-sized reduction or a device synchronisation."""
        return self._num_clusters

    def forward(self, indexes: torch.Tensor) -> torch.Tensor:
        """Looks up the cluster ids of dataset indexes.

        Args:
            indexes: (B,) (any shape) integer dataset indexes, on the buffer's device.

        Returns:
            int64 tensor of the same shape: ``ids[indexes]``. Range is checked for CPU
            indexes only (on an accelerator the check would cost a device synchronisation
            per step).
        """
        if not isinstance(indexes, torch.Tensor):
            raise ValueError(
                f"{self.name}: expects a torch.Tensor of indexes, got {type(indexes).__name__}"
            )
        if indexes.dtype.is_floating_point or indexes.dtype.is_complex or indexes.dtype == torch.bool:
            raise ValueError(f"{self.name}: expects integer indexes, got {indexes.dtype}")
        if devices.host_reads_free(indexes) and indexes.numel() > 0:
            low, high = int(indexes.min()), int(indexes.max())
            n = self.ids.numel()
            if low < 0 or high >= n:
                bad = low if low < 0 else high
                raise ValueError(f"{self.name}: index {bad} out of range for {n} samples")
        return self.ids[indexes.long()]

    # --------------------------------------------------------------- reporting
    def stats(self) -> Dict[str, Any]:
        """Cluster size statistics.

        Returns:
            dict with num_samples, num_clusters, size_histogram (cluster size -> how many
            clusters have that size, ascending sizes), min_size, mean_size, max_size and
            singletons (clusters of one sample: they give an anchor no positive but its
            own other views).
        """
        ids = self.ids.cpu().numpy()
        sizes = np.bincount(ids)
        histogram = Counter(int(s) for s in sizes)
        return {
            "num_samples": int(ids.size),
            "num_clusters": int(sizes.size),
            "size_histogram": {size: histogram[size] for size in sorted(histogram)},
            "min_size": int(sizes.min()),
            "mean_size": float(sizes.mean()),
            "max_size": int(sizes.max()),
            "singletons": int(histogram.get(1, 0)),
        }

    def _describe_extra(self) -> str:
        """Provider-specific tail of ``describe()``; empty by default."""
        return ""

    def describe(self) -> str:
        """One-line human summary, e.g. for the training log."""
        s = self.stats()
        line = (
            f"{self.name}: {s['num_clusters']} clusters over {s['num_samples']} samples "
            f"(size min/mean/max {s['min_size']}/{s['mean_size']:.1f}/{s['max_size']}, "
            f"{s['singletons']} singletons)"
        )
        extra = self._describe_extra()
        return f"{line}; {extra}" if extra else line

    def extra_repr(self) -> str:
        return f"{self.params}"
