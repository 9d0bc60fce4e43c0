"""The labelled subset of a training split for semi-supervised fine-tuning: a seeded per-class
draw of a label fraction, or the images a subset file lists (SimCLR's published ImageNet 1 %
/ 10 % lists are such files).

Per-class draw (``per_class_subset``), reproducible with numpy alone::

    rng = numpy.random.RandomState(seed)
    for c in sorted(set(labels)):                          # classes in increasing order
        members = numpy.flatnonzero(labels == c)           # that class's indices, sorted
        keep = max(1, floor(fraction * len(members) + 0.5))   # round half up, >= 1
        chosen += members[rng.permutation(len(members))[:keep]]
    subset = sorted(chosen)

One RandomState serves all classes in turn, so a class's draw depends on the seed and on the
sizes of the classes before it.
"""
import math
import os
from typing import Dict, List, Sequence

import numpy as np


def per_class_count(fraction: float, n: int) -> int:
    """Images kept of a class of ``n``: ``fraction x n`` rounded half up, at least 1."""
    return max(1, math.floor(fraction * n + 0.5))


def per_class_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the labelled subset (the module docstring's rule). ``labels``: (N,)
    ints >= 0."""
    labels = np.asarray(labels)
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if labels.size == 0 or (labels < 0).any():
        raise ValueError("per_class_subset needs a label >= 0 for every image")
    rng = np.random.RandomState(seed)
    chosen: List[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep = per_class_count(fraction, len(members))
        chosen.append(members[rng.permutation(len(members))[:keep]])
    return np.sort(np.concatenate(chosen))


def _name_index(paths: Sequence[str]) -> Dict[str, List[int]]:
    index: Dict[str, List[int]] = {}
    for i, p in enumerate(paths):
        index.setdefault(os.path.basename(p), []).append(i)
    return index


def read_subset_file(path: str, paths: Sequence[str], split: str) -> np.ndarray:
    """Sorted indices of the images ``path`` lists, one per line: a path relative to the
    dataset root as in ``paths`` (``/`` separated; a leading ``./`` is dropped), or a bare
    file name that names exactly one image. Blank lines and ``#`` comment lines are skipped;
    a BOM and CRLF line ends are accepted. ``split`` names the split in messages.

    Raises:
        ValueError: "file:line: ..." for an image not in the split, an ambiguous file name
            or a repeated image; a file that lists no image.
    """
    where = {p: i for i, p in enumerate(paths)}
    names = _name_index(paths)
    first: Dict[int, int] = {}
    with open(path, encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            key = entry.replace("\\", "/")
            key = key[2:] if key.startswith("./") else key
            if "/" in key:
                hits = [where[key]] if key in where else []
            else:
                hits = names.get(key, [])
            if not hits:
                raise ValueError(f"{path}:{number}: {entry!r} is not an image of the {split} "
                                 f"(expected a path relative to the dataset root such as "
                                 f"{paths[0]!r}, or a file name)")
            if len(hits) > 1:
                raise ValueError(f"{path}:{number}: file name {entry!r} names {len(hits)} "
                                 f"images of the {split} ({paths[hits[0]]!r}, "
                                 f"{paths[hits[1]]!r}, ...): give the path relative to the "
                                 f"dataset root")
            i = hits[0]
            if i in first:
                raise ValueError(f"{path}:{number}: {entry!r} is listed twice (first at line "
                                 f"{first[i]})")
            first[i] = number
    if not first:
        raise ValueError(f"{path}: lists no image; expected one image path per line")
    return np.array(sorted(first), dtype=np.int64)
