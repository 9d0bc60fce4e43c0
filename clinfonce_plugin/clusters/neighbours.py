"""K nearest neighbours of every sample of a feature matrix (cosine), self excluded.

Implements the neighbour search of WCL's KNN multi-crop (https://arxiv.org/abs/2110.04770,
Sec. 3.4): exact inner product on L2-normalised features with faiss ``IndexFlatIP`` (moved to
a GPU when faiss has one), or the same search in chunked torch matmuls.

Both backends are exact; they can differ only in the order of exactly tied neighbours.
Plain torch/numpy/faiss: no host import.
"""
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from clinfonce_plugin.utils.precision import autocast_off

__all__ = ["BACKENDS", "knn_table", "drop_self"]

BACKENDS = ("faiss", "torch")

# similarity entries per chunk of query rows in the torch backend (~64 MB of float32)
_CHUNK_ELEMENTS = 1 << 24


def drop_self(candidates: torch.Tensor, k: int, row_ids: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
    """Keeps the first ``k`` candidates of each row that are not the row itself.

    Args:
        candidates: (n, k + 1) neighbour indices, best first (a search that asked for one
            neighbour more than needed, because the query is in the database).
        k: neighbours to keep.
        row_ids: (n,) index of each query row in the database; ``arange(n)`` if None.

    Returns:
        (n, k) int64. Where the row is among its candidates it is removed (it need not be
        first: duplicated features tie with it); otherwise the last candidate is dropped.
    """
    n = candidates.shape[0]
    if candidates.shape != (n, k + 1):
        raise ValueError(f"candidates must be (n, k + 1) = ({n}, {k + 1}), "
                         f"got {tuple(candidates.shape)}")
    if row_ids is None:
        row_ids = torch.arange(n, device=candidates.device)
    is_self = candidates == row_ids[:, None]
    # rows without themselves among the candidates drop their last (worst) candidate
    no_self = ~is_self.any(dim=1)
    is_self[no_self, k] = True
    # exactly one True per row: keep the others in their order
    keep = ~is_self
    return candidates[keep].view(n, k)


def _check(features: torch.Tensor, k: int) -> None:
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"features must be a 2-D tensor (N, D), got {shape}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if k >= features.shape[0]:
        raise ValueError(f"k={k} neighbours need at least k + 1 = {k + 1} samples, "
                         f"got N={features.shape[0]}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or inf")


def _faiss_search(x: np.ndarray, k: int, device: torch.device) -> np.ndarray:
    import faiss  # imported here: only this backend needs it

    index = faiss.IndexFlatIP(x.shape[1])
    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources") \
            and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, device.index or 0, index)
    index.add(x)
    _, idx = index.search(x, k + 1)
    return idx


@torch.no_grad()
def _torch_search(x: torch.Tensor, k: int) -> torch.Tensor:
    n = x.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // n)
    out = []
    with autocast_off(x.device.type):  # in x's dtype, also when called under autocast
        for start in range(0, n, chunk):
            sim = x[start:start + chunk] @ x.T
            out.append(sim.topk(k + 1, dim=1).indices)
    return torch.cat(out)


@torch.no_grad()
def knn_table(features: torch.Tensor, k: int, backend: str = "faiss") -> torch.Tensor:
    """The ``k`` most cosine-similar *other* samples of every row of ``features``.

    Args:
        features: (N, D) features (any norm; rows are L2-normalised here, an all-zero row
            stays zero and is similar to nothing).
        k: neighbours per sample, 1 <= k < N.
        backend: "faiss" (``IndexFlatIP``; on the GPU of ``features`` when faiss has GPU
            support) or "torch" (chunked matmul + topk on ``features.device``).

    Returns:
        (N, k) int64 on ``features.device``, row i = indices of i's neighbours, most
        similar first, never i itself.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}. Choose from {sorted(BACKENDS)}")
    _check(features, k)
    x = F.normalize(features.detach().float(), dim=1)
    if backend == "faiss":
        cand = _faiss_search(np.ascontiguousarray(x.cpu().numpy()), k, x.device)
        cand = torch.from_numpy(cand.astype(np.int64)).to(features.device)
        if bool((cand < 0).any()):  # faiss pads with -1 when it finds too few results
            raise RuntimeError("faiss returned fewer neighbours than requested")
    else:
        cand = _torch_search(x, k)
    return drop_self(cand, k)
