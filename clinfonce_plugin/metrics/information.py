"""Information-theoretic cluster metrics I(Z;T), H(Z|T), H(Z).

Implements the cluster-quality measures of Cl-InfoNCE (https://arxiv.org/abs/2202.06670),
Sec. 4: Z are cluster ids, T downstream labels. Every quantity is computed exactly from
the sparse contingency table of (Z, T), so 50,000 samples in 10,000 clusters never build
a dense K x C table: the work is O(N log N) for the remapping plus O(nnz) for the sums.

Plain numpy/scipy: no torch, no host.
"""
from numbers import Real
from typing import Tuple

import numpy as np
import scipy.sparse as sp

__all__ = ["contingency", "entropy", "conditional_entropy", "mutual_information"]


def _as_codes(x, name: str) -> Tuple[np.ndarray, int]:
    """Checks a 1-D integer array and remaps its values to 0..K-1 (sorted by value).

    Returns:
        codes: (N,) int64 in 0..K-1, K: the number of distinct values.
    """
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one sample")
    # bool is rejected on purpose: a mask passed by mistake should not count as clusters
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    values, codes = np.unique(arr, return_inverse=True)
    return codes.reshape(-1).astype(np.int64, copy=False), int(values.size)


def _check_pair(z, t) -> Tuple[np.ndarray, int, np.ndarray, int]:
    z_codes, k = _as_codes(z, "z")
    t_codes, c = _as_codes(t, "t")
    if z_codes.size != t_codes.size:
        raise ValueError(
            f"z and t must have the same length, got {z_codes.size} and {t_codes.size}"
        )
    return z_codes, k, t_codes, c


def _log_factor(base: float) -> float:
    """1 / ln(base): multiplies natural-log results into the requested base."""
    if isinstance(base, bool) or not isinstance(base, Real):
        raise ValueError(f"base must be a real number > 0 and != 1, got {base!r}")
    base = float(base)
    if not np.isfinite(base) or base <= 0 or base == 1:
        raise ValueError(f"base must be a finite number > 0 and != 1, got {base}")
    return 1.0 / np.log(base)


def _table(z_codes: np.ndarray, k: int, t_codes: np.ndarray, c: int) -> sp.csr_matrix:
    ones = np.ones(z_codes.size, dtype=np.int64)
    # coo -> csr sums the duplicate (z, t) pairs: entry (i, j) = #samples with Z=i, T=j
    table = sp.coo_matrix((ones, (z_codes, t_codes)), shape=(k, c)).tocsr()
    table.sum_duplicates()
    return table


def contingency(z, t) -> sp.csr_matrix:
    """Sparse contingency table of two labelings.

    Args:
        z: (N,) integer cluster ids (any integer values).
        t: (N,) integer labels (any integer values).

    Returns:
        (K, C) ``scipy.sparse.csr_matrix`` of int64 counts; row i is the i-th smallest
        distinct value of z, column j the j-th smallest distinct value of t.
    """
    return _table(*_check_pair(z, t))


def _entropy_of_counts(counts: np.ndarray, n: int) -> float:
    """Natural-log entropy of the distribution counts / n (counts > 0)."""
    counts = counts.astype(np.float64)
    # each term p * ln(n / n_i) >= 0, so the sum is never negative from rounding
    return float(np.sum(counts / n * np.log(n / counts)))


def entropy(z, base: float = 2) -> float:
    """H(Z) of the empirical distribution of integer labels.

    Args:
        z: (N,) integer labels.
        base: logarithm base (2 -> bits, e -> nats).
    """
    factor = _log_factor(base)
    codes, k = _as_codes(z, "z")
    counts = np.bincount(codes, minlength=k)
    return _entropy_of_counts(counts, codes.size) * factor


def _nonzero_cells(z, t):
    """Nonzero cells of the contingency table with their row and column marginals."""
    z_codes, k, t_codes, c = _check_pair(z, t)
    table = _table(z_codes, k, t_codes, c).tocoo()
    n_zt = table.data.astype(np.int64)
    n_z = np.bincount(z_codes, minlength=k).astype(np.int64)[table.row]
    n_t = np.bincount(t_codes, minlength=c).astype(np.int64)[table.col]
    return n_zt, n_z, n_t, z_codes.size


def conditional_entropy(z, t, base: float = 2) -> float:
    """H(Z|T) = -sum_{z,t} p(z,t) log p(z|t).

    Args:
        z: (N,) integer cluster ids.
        t: (N,) integer labels.
        base: logarithm base (2 -> bits).
    """
    factor = _log_factor(base)
    n_zt, _, n_t, n = _nonzero_cells(z, t)
    # n(z,t) <= n(t), so every term is >= 0
    value = np.sum(n_zt / n * np.log(n_t / n_zt))
    return float(value) * factor


def mutual_information(z, t, base: float = 2) -> float:
    """I(Z;T) = sum_{z,t} p(z,t) log(p(z,t) / (p(z) p(t))).

    The ratio is formed from exact integer products n(z,t) * N and n(z) * n(t), so a
    product table (independent Z and T) gives exactly 0. Rounding can only leave the
    result a few ulps outside [0, min(H(Z), H(T))]; it is clipped to 0 from below.

    Args:
        z: (N,) integer cluster ids.
        t: (N,) integer labels.
        base: logarithm base (2 -> bits).
    """
    factor = _log_factor(base)
    n_zt, n_z, n_t, n = _nonzero_cells(z, t)
    # int64 products stay exact up to N ~ 3e9; the float conversion up to N ~ 9e7
    ratio = (n_zt * n) / (n_z * n_t)
    value = float(np.sum(n_zt / n * np.log(ratio)))
    return max(value, 0.0) * factor
