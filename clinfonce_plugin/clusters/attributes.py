"""Clusters from discrete attributes: equal values on the top-k highest-entropy attributes.

Implements the attribute-based clustering of Cl-InfoNCE
(https://arxiv.org/abs/2202.06670, Sec. 3.1 and Fig. 4): attributes are ranked by their
entropy, the k most informative ones are kept, and two samples share a cluster when they
agree on all k. Multi-valued attributes are one-hot binarised first.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .base import REQUIRED, ClusterProvider, check_int


def _as_integer_table(attributes) -> np.ndarray:
    """(N, A) integer array or ValueError naming the first bad entry."""
    table = np.asarray(attributes)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"attribute table must be non-empty (N, A), got shape {table.shape}")
    if table.dtype == bool:
        return table.astype(np.int64)
    if np.issubdtype(table.dtype, np.integer):
        return table.astype(np.int64)
    if np.issubdtype(table.dtype, np.floating):
        bad = ~np.isfinite(table) | (table != np.round(table))
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"attribute table must hold integer values, got {table[row, col].item()!r} "
                f"at sample {row}, column {col}"
            )
        return table.astype(np.int64)
    raise ValueError(f"attribute table must hold integer values, got dtype {table.dtype}")


def binarize_attributes(attributes, names: Optional[Sequence[str]] = None
                        ) -> Tuple[np.ndarray, List[str]]:
    """One-hot binarises every column that is not already 0/1.

    Args:
        attributes: (N, A) integer table.
        names: A column names (default ``attr0 .. attr{A-1}``).

    Returns:
        (binary, names): (N, B) uint8 table and its B names. A column whose values are a
        subset of {0, 1} is kept as it is (even when constant); any other column becomes
        one column per distinct value v (ascending), named ``f"{name}={v}"``, placed where
        the original column was.
    """
    table = _as_integer_table(attributes)
    n_cols = table.shape[1]
    if names is None:
        names = [f"attr{j}" for j in range(n_cols)]
    names = [str(name) for name in names]
    if len(names) != n_cols:
        raise ValueError(f"got {len(names)} attribute names for {n_cols} attribute columns")
    columns: List[np.ndarray] = []
    out_names: List[str] = []
    for j in range(n_cols):
        col = table[:, j]
        values = np.unique(col)
        if np.isin(values, (0, 1)).all():
            columns.append(col)
            out_names.append(names[j])
        else:
            for v in values:
                columns.append(col == v)
                out_names.append(f"{names[j]}={int(v)}")
    return np.stack(columns, axis=1).astype(np.uint8), out_names


def binary_entropies(binary: np.ndarray) -> np.ndarray:
    """Entropy in bits of each 0/1 column seen as a Bernoulli variable.

    Args:
        binary: (N, B) 0/1 table.

    Returns:
        (B,) float64 in [0, 1]. Computed from the minority count only, so a column and its
        complement get bit-identical values (ties stay ties).
    """
    n = binary.shape[0]
    ones = binary.sum(axis=0).astype(np.int64)
    minority = np.minimum(ones, n - ones)
    p = minority / n
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(q > 0, q * np.log2(q), 0.0))
    return h


def rank_attributes(attributes, names: Optional[Sequence[str]] = None
                    ) -> Tuple[np.ndarray, List[str], np.ndarray, np.ndarray]:
    """Binarises the table and ranks its binary columns by entropy.

    Returns:
        (binary, names, entropies, order): the (N, B) binary table, its B names, (B,)
        entropies in bits, and the (B,) column order by entropy descending, ties broken by
        the lower column index (constant columns, entropy 0, come last).
    """
    binary, bnames = binarize_attributes(attributes, names)
    entropies = binary_entropies(binary)
    order = np.argsort(-entropies, kind="stable")  # stable sort keeps lower index first on ties
    return binary, bnames, entropies, order


def select_attribute_clusters(attributes, k: int, names: Optional[Sequence[str]] = None
                              ) -> Tuple[np.ndarray, List[str], np.ndarray]:
    """Clusters samples on the top-k highest-entropy binary attributes.

    Args:
        attributes: (N, A) integer table (binary or multi-valued columns).
        k: number of binary columns to keep, 1 <= k <= B (columns after binarisation).
        names: A column names.

    Returns:
        (ids, selected_names, selected_entropies): (N,) int64 cluster ids; samples share an
        id iff their rows are equal on the kept columns; ids follow the lexicographic order
        of the kept rows, columns taken in rank order (highest entropy first).
    """
    binary, bnames, entropies, order = rank_attributes(attributes, names)
    k = check_int("attributes", "k", k, 1, binary.shape[1],
                  hint=" (the number of binary attribute columns after one-hot binarisation)")
    keep = order[:k]
    _, inverse = np.unique(binary[:, keep], axis=0, return_inverse=True)
    ids = inverse.reshape(-1).astype(np.int64)
    return ids, [bnames[j] for j in keep], entropies[keep]


def attribute_cluster_ids(attributes, k: int, names: Optional[Sequence[str]] = None
                          ) -> Tuple[np.ndarray, List[str]]:
    """Cluster ids on the top-k highest-entropy attributes and the names of those attributes.

    See ``select_attribute_clusters``; this is its pure (ids, selected_names) form.
    """
    ids, selected, _ = select_attribute_clusters(attributes, k, names)
    return ids, selected


class AttributesProvider(ClusterProvider):
    """Implements attribute clusters (https://arxiv.org/abs/2202.06670, Sec. 3.1, Fig. 4).

    Reads ``SampleInfo.attributes`` (N, A). Columns that are not 0/1 are one-hot
    binarised (``"name=value"`` columns); each binary column's Bernoulli entropy (bits) is
    computed; columns are ranked by entropy descending, ties by lower column index; the
    top ``k`` are kept and samples with identical values on them share a cluster.

    Extra cfg settings:
        k (int, required): number of binary attribute columns to keep, 1 <= k <= B.

    Attributes:
        selected_attributes: names of the kept columns, in rank order.
        selected_entropies: (k,) their entropies in bits.
    """

    name = "attributes"
    PARAMS = {"k": REQUIRED}

    def _build(self) -> np.ndarray:
        if self.info.attributes is None:
            raise ValueError(
                "attributes: needs SampleInfo.attributes (N, A), but the dataset provides none"
            )
        try:
            ids, selected, entropies = select_attribute_clusters(
                self.info.attributes, self.params["k"], self.info.attribute_names
            )
        except ValueError as err:
            message = str(err)
            raise ValueError(message if message.startswith("attributes:")
                             else f"attributes: {message}") from None
        self.selected_attributes: List[str] = selected
        self.selected_entropies: np.ndarray = entropies
        return ids

    def _describe_extra(self) -> str:
        shown = ", ".join(
            f"{n} ({h:.3f} bits)"
            for n, h in zip(self.selected_attributes[:5], self.selected_entropies[:5])
        )
        more = f", ... ({len(self.selected_attributes)} in all)" if len(self.selected_attributes) > 5 else ""
        return f"top-{len(self.selected_attributes)} attributes by entropy: {shown}{more}"
