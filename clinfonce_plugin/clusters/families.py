"""Cluster families with one information measure held fixed.

Implements the controlled clusterings of Cl-InfoNCE (https://arxiv.org/abs/2202.06670,
Sec. 4.2 and App. H): from the downstream labels T of a training set, three families of
cluster assignments Z built from random branch-``b`` hierarchies and partial
permutations:

``fixed_h_zt``  (the paper's "fix H(Z|T)", file ``..._hirc_rand_fixh.csv``)
    A random branch-b tree over the *classes*: member ``label_gran_m`` merges the
    classes ``b**m`` at a time in a random class order. Every cluster is a union of
    classes, so H(Z|T) = 0 in every member while I(Z;T) = H(Z) falls with m.
``fixed_i_zt``  (the paper's "fix I(Z;T)", file ``..._hirc_rand.csv``)
    A branch-b tree over the *instances of each class*: member ``label_gran_j`` splits
    each class into groups of ``b**(L - j)`` instances (L the deepest level of any
    class; a class stops at one group). Every cluster lies inside one class, so
    I(Z;T) = H(T) in every member while H(Z|T) grows with j (``label_gran_0`` is T,
    the last member is one cluster per instance).
``fixed_h_z``  (the paper's "fix H(Z)", file ``..._fix_allh_from_mi.csv``)
    For each member ``label_gran_g`` of ``fixed_i_zt`` and each i in 0..C-1, the cluster
    ids of the instances of the first i classes of a random class order are shuffled
    among those instances (``label_gran_<g>_<i>``). The multiset of ids is unchanged, so
    H(Z) is that of the base member, while I(Z;T) falls and H(Z|T) rises with i.

The random draws follow the official generator (github.com/Crazy-Jack/Cl-InfoNCE,
``data_processing/UT-zappos50K/synthetic/generate.py``) draw for draw with numpy's
legacy ``RandomState`` and its seed 0, so on the same label column the members equal
the published files. Classes are numbered by decreasing frequency, as in those files
(see ``_classes``).

Plain numpy: no torch, no host.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..metrics.information import conditional_entropy, entropy, mutual_information

__all__ = ["FAMILIES", "FIXED", "branch_levels", "build_family", "family_table",
           "fixed_h_zt", "fixed_i_zt", "fixed_h_z"]

SEED = 0  # the official generator's seed for every draw
# family name -> the quantity held fixed in it
FIXED = {"fixed_h_zt": "H(Z|T)", "fixed_i_zt": "I(Z;T)", "fixed_h_z": "H(Z)"}
FAMILIES = tuple(FIXED)


def branch_levels(n: int, branch: int = 2) -> List[np.ndarray]:
    """Levels of a branch-``b`` hierarchy over ``n`` ordered items.

    Level g groups items ``b**g`` at a time (item j -> ``j // b**g``) for g = 0, 1, ...
    while ``b**g < n``; one more level puts every item in group 0. So there are at least
    two levels, the first one group per item and the last one group.

    Returns:
        list of (n,) int64 arrays, finest first.
    """
    if n < 1:
        raise ValueError(f"branch_levels: need at least one item, got n={n}")
    if branch < 2:
        raise ValueError(f"branch_levels: branch must be >= 2, got {branch}")
    index = np.arange(n, dtype=np.int64)
    levels = [index]
    g = 0
    while branch ** (g + 1) < n:
        g += 1
        levels.append(index // branch ** g)
    levels.append(np.zeros(n, dtype=np.int64))
    return levels


def _classes(labels) -> Tuple[np.ndarray, np.ndarray]:
    """(N,) integer labels -> (the C distinct values, most frequent first; (N,) class index
    0..C-1 in that order).

    The official files number the classes by decreasing frequency in the training split
    (UT-Zappos50K's ``rank_H`` class column: 8,986 images in class 0 down to 2 in class
    20), and the random draws are made over that numbering; ranking the classes the same
    way here makes the families independent of how a reader numbers its classes. Ties keep
    the order of the label values.
    """
    t = np.asarray(labels)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {t.shape}")
    if t.dtype.kind not in "iu":
        raise ValueError(f"labels must hold integers, got dtype {t.dtype}")
    values, codes, counts = np.unique(t, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(values.size, dtype=np.int64)
    rank[order] = np.arange(values.size)
    return values[order], rank[codes.reshape(-1)]


def _check_buildable(family: str, num_classes: int, branch: int) -> None:
    if branch < 2:
        raise ValueError(f"{family}: branch must be >= 2, got {branch}")
    if num_classes < 2:
        raise ValueError(
            f"{family}: the labels hold {num_classes} class; the family needs at least 2 "
            f"classes (a branch-{branch} hierarchy over one class has a single cluster)"
        )


def fixed_h_zt(labels, branch: int = 2, seed: int = SEED) -> Dict[str, np.ndarray]:
    """The fixed-H(Z|T) family: unions of classes along a random class tree.

    Args:
        labels: (N,) integer labels T.
    Returns:
        ``{"label_gran_<m>": (N,) int64 ids}`` for m = 0 (one cluster per class) up to
        the last level (one cluster).
    """
    values, codes = _classes(labels)
    c = values.size
    _check_buildable("fixed_h_zt", c, branch)
    order = np.random.RandomState(seed).permutation(c)  # class order[i] sits at leaf i
    out = {}
    for m, level in enumerate(branch_levels(c, branch)):
        of_class = np.empty(c, dtype=np.int64)
        of_class[order] = level
        out[f"label_gran_{m}"] = of_class[codes]
    return out


def _within_class(codes: np.ndarray, c: int, branch: int, seed: int):
    """Per class: instance rows (ascending), the seeded permutation of them, its levels."""
    rows = [np.flatnonzero(codes == k) for k in range(c)]
    # the official generator re-seeds before each class, so every class and every
    # level uses the same permutation of the class's rows
    perms = [np.random.RandomState(seed).permutation(r) for r in rows]
    levels = [branch_levels(r.size, branch) for r in rows]
    return rows, perms, levels


def fixed_i_zt(labels, branch: int = 2, seed: int = SEED) -> Dict[str, np.ndarray]:
    """The fixed-I(Z;T) family: each class split along a random tree over its instances.

    Args:
        labels: (N,) integer labels T.
    Returns:
        ``{"label_gran_<j>": (N,) int64 ids}`` for j = 0 (the classes) up to L (one
        cluster per instance), in the official column order (L first).
    """
    values, codes = _classes(labels)
    c = values.size
    _check_buildable("fixed_i_zt", c, branch)
    _, perms, levels = _within_class(codes, c, branch, seed)
    deepest = max(len(lv) - 1 for lv in levels)
    out = {}
    for g in range(deepest + 1):  # g = 0 is one cluster per instance
        z = np.zeros(codes.size, dtype=np.int64)
        offset = 0
        for k in range(c):
            level = levels[k][min(g, len(levels[k]) - 1)]
            z[perms[k]] = level + offset
            offset += int(np.unique(level).size)
        out[f"label_gran_{deepest - g}"] = z
    return out


def fixed_h_z(labels, branch: int = 2, seed: int = SEED) -> Dict[str, np.ndarray]:
    """The fixed-H(Z) family: partial permutations of the fixed-I(Z;T) members.

    The random state continues the official generator's: after the fixed-I(Z;T)
    family its last draw was the permutation of the last class's rows, then the class
    order is drawn, then one permutation per member in the order written below.

    Args:
        labels: (N,) integer labels T.
    Returns:
        ``{"label_gran_<g>_<i>": (N,) int64 ids}`` for every member g of ``fixed_i_zt``
        (its order) and i = 0..C-1 (member g with the first i classes of the random
        order shuffled; i = 0 is member g itself).
    """
    values, codes = _classes(labels)
    c = values.size
    _check_buildable("fixed_h_z", c, branch)
    base = fixed_i_zt(labels, branch, seed)
    rows = [np.flatnonzero(codes == k) for k in range(c)]
    rng = np.random.RandomState(seed)
    rng.permutation(rows[-1].size)  # the fixed-I(Z;T) generator's last draw
    class_order = rng.permutation(c)
    out = {}
    for name, z in base.items():
        g = name.rsplit("_", 1)[1]
        for i in range(c):
            touched = np.zeros(c, dtype=bool)
            touched[class_order[:i]] = True
            where = np.flatnonzero(touched[codes])  # ascending rows of the touched classes
            member = z.copy()
            # draws depend only on the length, as in the official float-array shuffle
            member[where] = rng.permutation(z[where])
            out[f"label_gran_{g}_{i}"] = member
    return out


_BUILDERS = {"fixed_h_zt": fixed_h_zt, "fixed_i_zt": fixed_i_zt, "fixed_h_z": fixed_h_z}


def build_family(name: str, labels, branch: int = 2, seed: int = SEED) -> Dict[str, np.ndarray]:
    """The members of family ``name`` (one of ``FAMILIES``) for labels T."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown family {name!r}; choose from {list(FAMILIES)}")
    return _BUILDERS[name](labels, branch=branch, seed=seed)


def family_table(members: Dict[str, np.ndarray], labels) -> List[dict]:
    """One row per member: its name, number of clusters, I(Z;T), H(Z|T), H(Z) in bits."""
    t = np.asarray(labels)
    rows = []
    for name, z in members.items():
        rows.append({
            "member": name,
            "clusters": int(np.unique(z).size),
            "I(Z;T)": mutual_information(z, t),
            "H(Z|T)": conditional_entropy(z, t),
            "H(Z)": entropy(z),
        })
    return rows


def members_sorted(names: Sequence[str]) -> List[str]:
    """Member names in increasing numeric order of their suffixes."""
    def key(name: str):
        return tuple(int(p) for p in name[len("label_gran_"):].split("_"))
    return sorted(names, key=key)
