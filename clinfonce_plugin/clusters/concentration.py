"""PCL's concentration estimate phi: how tightly each cluster's embeddings sit around its
prototype, used as a per-prototype temperature by ProtoNCE. Plain numpy: no host, no torch."""
from typing import Tuple

import numpy as np

from .kmeans import l2_normalise

# the smoothing constant alpha of PCL's phi: small clusters get a larger phi (the official
# run_kmeans: np.log(len(dist) + 10))
ALPHA = 10.0
# the official run_kmeans clips phi to these percentiles "for stability"
CLIP_PERCENTILES: Tuple[float, float] = (10.0, 90.0)


def concentration(embeddings: np.ndarray, ids: np.ndarray, centroids: np.ndarray,
                  temperature: float, alpha: float = ALPHA,
                  clip_percentiles: Tuple[float, float] = CLIP_PERCENTILES) -> np.ndarray:
    """Implements PCL's concentration estimate (Li et al., ICLR 2021,
    https://arxiv.org/abs/2005.04966), as the official code's ``run_kmeans`` computes it.

    For cluster c with members v_1 .. v_Z (the L2-normalised embeddings) and prototype c::

        phi_c = sum_z ||v_z - c||_2 / (Z log(Z + alpha))          (Z > 1)

    A cluster of one member takes the largest phi of the others. phi is then clipped to its
    ``clip_percentiles`` (numpy's linear percentiles over the clusters) and scaled so that its
    mean is ``temperature``. A phi still 0 after the clipping (members all on their
    prototype, e.g. duplicate images) takes the smallest positive phi, since the loss divides
    by it; when every phi is 0 every phi is ``temperature``.

    The official code measures the distances to the centroids of its Euclidean k-means (the
    members' means); here they are measured to ``centroids``, the prototypes the loss uses
    (the kmeans provider's unit centroids of spherical k-means), which is the paper's c.

    Args:
        embeddings: (N, d) embeddings in dataset order (normalised here).
        ids: (N,) contiguous cluster ids 0..K-1.
        centroids: (K', d) with K' >= K: row c is cluster c's prototype (rows >= K unused).
        temperature: the mean of the returned phi, > 0.
        alpha: the paper's alpha.
        clip_percentiles: (low, high) percentiles phi is clipped to.

    Returns:
        (K,) float32 phi, one per cluster, > 0.
    """
    x = l2_normalise(embeddings).astype(np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != (x.shape[0],):
        raise ValueError(f"ids must have shape ({x.shape[0]},), got {ids.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    k = int(ids.max()) + 1 if ids.size else 0
    if k == 0 or ids.min() < 0 or np.unique(ids).size != k:
        raise ValueError("ids must be contiguous cluster ids 0..K-1")
    centroids = np.asarray(centroids, dtype=np.float64)
    if centroids.ndim != 2 or centroids.shape[0] < k or centroids.shape[1] != x.shape[1]:
        raise ValueError(f"centroids must have shape (>= {k}, {x.shape[1]}), "
                         f"got {centroids.shape}")
    distances = np.linalg.norm(x - centroids[ids], axis=1)
    sizes = np.bincount(ids, minlength=k)
    sums = np.bincount(ids, weights=distances, minlength=k)
    phi = np.zeros(k)
    many = sizes > 1
    phi[many] = sums[many] / (sizes[many] * np.log(sizes[many] + alpha))
    phi[~many] = phi.max()
    phi = np.clip(phi, np.percentile(phi, clip_percentiles[0]),
                  np.percentile(phi, clip_percentiles[1]))
    positive = phi[phi > 0]
    if positive.size == 0:
        return np.full(k, temperature, dtype=np.float32)
    phi[phi <= 0] = positive.min()
    return (temperature * phi / phi.mean()).astype(np.float32)
