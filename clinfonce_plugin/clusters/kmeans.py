"""K-means clusters on the learned embeddings, recomputed while training.

Implements the K-means clusters of Cl-InfoNCE (https://arxiv.org/abs/2202.06670, Sec. 4.4,
Algorithm 1): after ``warmup_epochs`` epochs on instance clusters and then every ``period``
epochs the whole training set is embedded, the embeddings are L2-normalised and clustered
with spherical k-means (faiss), and the assignments become the clusters of the next epochs.
Several numbers of clusters (granularities, as PCL and the official ``--num_cluster
1000,2500``) are clustered from the same embeddings.

This module holds the clustering itself: ``spherical_kmeans`` (faiss, seeded), the refresh
schedule (``refresh_due``) and the ``kmeans`` provider, which owns the ids, centroids and
refresh epoch as buffers. The embedding pass is ``clusters.embedding_pass``; the method runs
it and hands the embeddings to ``KMeansProvider.refresh``. Plain numpy/torch/faiss: no host,
no Lightning.
"""
import sys
from typing import Any, Mapping, Optional, Set, Tuple

import numpy as np
import torch

from clinfonce_plugin.utils.distributed import all_ranks_agree

from .base import REQUIRED, ClusterProvider, check_int, contiguous
from .sample_info import SampleInfo

SPACES = ("backbone", "projector")
DEVICES = ("auto", "cpu", "gpu")


# faiss-cpu and faiss-gpu ship the same ``faiss`` module: the one installed last is imported
GPU_EXTRA_HINT = ('pip install -e ".[gpu]" adds faiss-gpu; if faiss-cpu was installed after '
                  'it: pip install --force-reinstall --no-deps faiss-gpu (docs/scaling.md)')
_notices_given: Set[str] = set()


def faiss_gpu_count() -> int:
    """GPUs faiss can use: 0 for a faiss built without GPU support (faiss-cpu)."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(getattr(faiss, "get_num_gpus", lambda: 0)())


def faiss_gpu_available() -> bool:
    """True when faiss was built with GPU support, sees a GPU, and torch has CUDA."""
    return faiss_gpu_count() > 0 and torch.cuda.is_available()


def choose_faiss_device(requested: str, faiss_gpus: int, torch_cuda: bool
                        ) -> Tuple[bool, Optional[str]]:
    """Where k-means runs: (on the GPU?, a one-line notice or None).

    ``auto`` takes the GPU when faiss has one and torch has CUDA; on a CUDA machine whose
    faiss has no GPU support (faiss-cpu) it runs on the CPU and says so. ``gpu`` without a
    usable faiss GPU is an error; ``cpu`` is the CPU."""
    if requested not in DEVICES:
        raise ValueError(f"k-means device must be one of {list(DEVICES)}, got {requested!r}")
    usable = faiss_gpus > 0 and torch_cuda
    if requested == "gpu" and not usable:
        raise ValueError("k-means device='gpu' but faiss has no GPU support or no GPU is "
                         f"visible; use device='auto' or 'cpu' ({GPU_EXTRA_HINT})")
    if requested == "cpu" or (requested == "auto" and not usable):
        notice = None
        if requested == "auto" and torch_cuda:
            notice = ("k-means runs on the CPU: this faiss has no GPU support; "
                      + GPU_EXTRA_HINT)
        return False, notice
    return True, None


def notice_once(text: str) -> None:
    """Prints ``[clinfonce] notice: text`` to stderr the first time this process sees it."""
    if text not in _notices_given:
        _notices_given.add(text)
        print(f"[clinfonce] notice: {text}", file=sys.stderr, flush=True)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """(N, d) rows scaled to unit L2 norm (an all-zero row stays zero), float32, C order."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def spherical_kmeans(x, k: int, iterations: int = 20, seed: int = 0, nredo: int = 1,
                     device: str = "auto") -> Tuple[np.ndarray, np.ndarray, float]:
    """Spherical k-means (faiss) of the L2-normalised rows of ``x``.

    Centroids are renormalised after every update and points go to the centroid of largest
    inner product (faiss ``Kmeans(..., spherical=True)`` on an inner-product index). faiss
    initialises from ``k`` points drawn with ``seed``, so equal input and seed give equal
    output (``check_same_on_all_ranks`` verifies it across ranks; what was measured on
    faiss-cpu is in ``docs/results.md``). faiss runs with torch's thread count
    (``torch.get_num_threads()``) so that DDP processes sharing a CPU do not oversubscribe
    it; the previous OpenMP setting is restored afterwards.

    Args:
        x: (N, d) float embeddings, N >= k; rows are normalised here.
        k: number of centroids.
        iterations: Lloyd iterations (faiss ``niter``).
        seed: faiss random seed (initial centroids, subsampling of very large N).
        nredo: runs with different initialisations; the one of best objective is kept.
        device: "auto" (faiss GPU index on this process's CUDA device when faiss has GPUs
            and torch has CUDA, else CPU; on a CUDA machine without faiss-gpu, or when the
            GPU index fails, the CPU with a one-line notice), "cpu" or "gpu".

    Returns:
        labels: (N,) int64 centroid index per row, in 0..k-1 (a centroid may be unused).
        centroids: (k, d) float32 unit-norm centroids.
        objective: the final sum of inner products of the points with their centroids.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"k-means needs a non-empty (N, d) embedding matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("k-means embeddings contain NaN or inf values")
    n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k} for N={n} embeddings")
    use_gpu, notice = choose_faiss_device(device, faiss_gpu_count(), torch.cuda.is_available())
    if notice:
        notice_once(notice)
    x = l2_normalise(x)
    if use_gpu:
        try:
            return _faiss_kmeans(x, k, iterations, seed, nredo, gpu=True)
        except RuntimeError as err:  # faiss reports a failing GPU index as RuntimeError
            if device == "gpu":
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            notice_once(f"faiss's GPU k-means failed ({first}); k-means runs on the CPU")
    return _faiss_kmeans(x, k, iterations, seed, nredo, gpu=False)


def _faiss_kmeans(x: np.ndarray, k: int, iterations: int, seed: int, nredo: int, gpu: bool
                  ) -> Tuple[np.ndarray, np.ndarray, float]:
    import faiss

    n, d = x.shape
    # min_points_per_centroid only controls faiss' "please provide more points" warning
    km = faiss.Kmeans(d, int(k), niter=int(iterations), seed=int(seed), nredo=int(nredo),
                      spherical=True, verbose=False, min_points_per_centroid=1)
    if gpu:
        km.gpu_resources = faiss.StandardGpuResources()  # kept alive as long as the index
        config = faiss.GpuIndexFlatConfig()
        config.device = torch.cuda.current_device()  # this rank's GPU, not all of them
        config.useFloat16 = False
        km.index = faiss.GpuIndexFlatIP(km.gpu_resources, d, config)
    previous_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    try:
        objective = float(km.train(x))
        _, labels = km.assign(x)
    finally:
        faiss.omp_set_num_threads(previous_threads)
    return labels.astype(np.int64).reshape(n), np.asarray(km.centroids, np.float32), objective


def compact_clusters(labels: np.ndarray, centroids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Renumbers used centroids 0..K-1 (K <= k) in increasing centroid index.

    Returns:
        ids: (N,) int64 contiguous cluster ids.
        centroids: (k, d) with row c the centroid of cluster c for c < K and zero rows after
            (the shape stays (k, d) so that it fits the checkpointed buffer).
    """
    used = np.unique(labels)
    ids = contiguous(labels)
    out = np.zeros_like(centroids)
    out[: used.size] = centroids[used]
    return ids, out


def refresh_due(epoch: int, period: int, last_refresh_epoch: int, warmup_epochs: int = 0) -> bool:
    """Whether the clusters are recomputed before ``epoch`` (0-based).

    Epochs ``0 .. warmup_epochs - 1`` train on the placeholder (instance) clusters: never due.
    Then due before epochs ``warmup_epochs``, ``warmup_epochs + period``, ... unless already
    done for that epoch (a run resumed inside such an epoch), and always when there never was
    a refresh (``last_refresh_epoch < 0``) past the warm-up.
    """
    if epoch < warmup_epochs:
        return False
    if last_refresh_epoch < 0:
        return True
    return (epoch - warmup_epochs) % period == 0 and epoch != last_refresh_epoch


def granularity_buffer_name(base: str, granularity: int) -> str:
    """``ids`` / ``centroids`` for granularity 0 (the names of a one-k provider), then
    ``ids_1`` / ``centroids_1``, ..."""
    return base if granularity == 0 else f"{base}_{granularity}"


class KMeansProvider(ClusterProvider):
    """Implements K-means clusters (https://arxiv.org/abs/2202.06670, Sec. 4.4, Algorithm 1).

    A dynamic provider: ``refresh(embeddings, epoch)`` replaces the ids with the spherical
    k-means assignments of the (N, d) training-set embeddings, once per number of clusters in
    ``k`` (granularity m is clustered with faiss seed ``seed + m``, as the official code seeds
    its m-th clustering with m); the method calls it when ``due(epoch)``: before epoch
    ``warmup_epochs`` and then every ``period`` epochs. Until the first refresh the ids of
    every granularity are a placeholder, one cluster per image (instance ids): the clusters
    of the warm-up epochs, which make Cl-InfoNCE SimCLR's loss (the official code's warm-up
    trains on instance labels, ``gran_lvl -1``).

    The state is the buffers ``ids`` and ``centroids`` of granularity 0 (the first k; the
    names of a one-k provider), ``ids_m`` and ``centroids_m`` of granularity m >= 1, and
    ``refresh_epoch``: sized at construction, so that a freshly built model loads a
    checkpoint of a refreshed one and keeps its clusters until the schedule says otherwise.
    ``ids``, ``num_clusters`` and ``forward`` are granularity 0's; ``granularity_ids(m)``,
    ``granularity_centroids(m)`` and ``granularity_num_clusters(m)`` give every granularity.

    Extra cfg settings:
        k (int or list of int, required): number of centroids, 1 <= k <= N; a list clusters
            the same embeddings once per entry (granularities). Empty clusters are dropped,
            so the number of clusters can be below k.
        iterations (int): k-means iterations (default 20; the official code's too).
        seed (int): faiss seed of granularity 0; granularity m uses seed + m; the same at
            every refresh (default 0).
        nredo (int): k-means restarts, best objective kept (default 1; the official code: 5).
        space (str): what is clustered: "projector" (output of the projector g, the
            official implementation) or "backbone" (backbone features). Default "projector".
        period (int): epochs between refreshes (default 1: every epoch).
        warmup_epochs (int): epochs trained on instance clusters before the first k-means
            (default 0, the official run script's; its argparse default is 100).
        device (str): "auto" (faiss GPU when available, else CPU), "cpu" or "gpu".

    Args:
        info: the training set's SampleInfo (N = num_samples).
        embedding_dims: dimension of each embedding space the model offers, e.g.
            ``{"backbone": 512, "projector": 128}``; the one of ``space`` sizes the centroids.
        **params: the settings above.

    Attributes:
        ks: the numbers of centroids, one per granularity.
        centroids: (k, d) float32 buffer, the unit centroids of granularity 0 at the last
            refresh (rows >= its number of clusters are zero); zeros before the first
            refresh. ``centroids_m``: the same for granularity m.
        refresh_epoch: int64 scalar buffer, the epoch of the last refresh, -1 before it.
    """

    name = "kmeans"
    dynamic = True
    PARAMS = {"k": REQUIRED, "iterations": 20, "seed": 0, "nredo": 1, "space": "projector",
              "period": 1, "warmup_epochs": 0, "device": "auto"}

    def __init__(self, info: SampleInfo, embedding_dims: Mapping[str, int], **params: Any) -> None:
        self._embedding_dims = dict(embedding_dims)  # read by _build, which the base __init__ runs
        super().__init__(info, **params)

    def _check_ks(self, value: Any) -> Tuple[int, ...]:
        n = self.info.num_samples
        hint = " (at most the number of samples)"
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"{self.name}: parameter 'k' must be an integer or a non-empty "
                                 f"list of integers, got {value!r}")
            return tuple(check_int(self.name, f"k[{i}]", v, 1, n, hint=hint)
                         for i, v in enumerate(value))
        return (check_int(self.name, "k", value, 1, n, hint=hint),)

    def _build(self) -> np.ndarray:
        p = self.params
        n = self.info.num_samples
        self.ks: Tuple[int, ...] = self._check_ks(p["k"])
        self.iterations = check_int(self.name, "iterations", p["iterations"], 1)
        self.seed = check_int(self.name, "seed", p["seed"], 0, 2**31 - len(self.ks))
        self.nredo = check_int(self.name, "nredo", p["nredo"], 1)
        self.period = check_int(self.name, "period", p["period"], 1)
        self.warmup_epochs = check_int(self.name, "warmup_epochs", p["warmup_epochs"], 0)
        if p["space"] not in SPACES:
            raise ValueError(f"{self.name}: parameter 'space' must be one of {list(SPACES)}, "
                             f"got {p['space']!r}")
        if p["device"] not in DEVICES:
            raise ValueError(f"{self.name}: parameter 'device' must be one of {list(DEVICES)}, "
                             f"got {p['device']!r}")
        if p["device"] == "gpu":
            try:
                choose_faiss_device("gpu", faiss_gpu_count(), torch.cuda.is_available())
            except ValueError as err:
                raise ValueError(f"{self.name}: {err}") from None
        self.space: str = p["space"]
        self.faiss_device: str = p["device"]
        dim = self._embedding_dims.get(self.space)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"{self.name}: needs the embedding dimension of space "
                             f"{self.space!r}, got embedding_dims={self._embedding_dims}")
        placeholder = np.arange(n, dtype=np.int64)  # instance ids until the first refresh
        for m, k in enumerate(self.ks):
            if m > 0:  # granularity 0's ids are the base class's buffer ``ids``
                self.register_buffer(granularity_buffer_name("ids", m),
                                     torch.from_numpy(placeholder.copy()))
            self.register_buffer(granularity_buffer_name("centroids", m), torch.zeros(k, dim))
        self.register_buffer("refresh_epoch", torch.tensor(-1, dtype=torch.long))
        self._granularity_clusters = [n] * len(self.ks)
        return placeholder

    # --------------------------------------------------------------- granularities
    @property
    def num_granularities(self) -> int:
        return len(self.ks)

    def _check_granularity(self, granularity: int) -> None:
        if not 0 <= granularity < len(self.ks):
            raise IndexError(f"{self.name}: granularity {granularity} out of range for "
                             f"{len(self.ks)} (k={list(self.ks)})")

    def granularity_ids(self, granularity: int) -> torch.Tensor:
        self._check_granularity(granularity)
        return getattr(self, granularity_buffer_name("ids", granularity))

    def granularity_centroids(self, granularity: int) -> torch.Tensor:
        """(k, d) buffer of clustering ``granularity``'s unit centroids (zero rows past its
        number of clusters)."""
        self._check_granularity(granularity)
        return getattr(self, granularity_buffer_name("centroids", granularity))

    def granularity_num_clusters(self, granularity: int) -> int:
        self._check_granularity(granularity)
        return self._granularity_clusters[granularity]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # the ids changed under the module: each K follows them (ids are contiguous: max + 1)
        self._granularity_clusters = [
            int(self.granularity_ids(m).max()) + 1 for m in range(len(self.ks))]

    # ------------------------------------------------------------------ schedule
    @property
    def refreshed(self) -> bool:
        """Whether the ids come from k-means (False: still the placeholder)."""
        return int(self.refresh_epoch) >= 0

    def due(self, epoch: int) -> bool:
        """Whether the schedule reclusters before ``epoch`` (see ``refresh_due``)."""
        return refresh_due(epoch, self.period, int(self.refresh_epoch), self.warmup_epochs)

    @torch.no_grad()
    def refresh(self, embeddings, epoch: int) -> torch.Tensor:
        """Clusters the training set's embeddings once per granularity and installs the
        assignments.

        Args:
            embeddings: (N, d) embeddings in dataset order, identical on every rank.
            epoch: the epoch the clusters are made for (stored in ``refresh_epoch``).

        Returns:
            ``self.ids``: granularity 0's (N,) int64 contiguous ids (the others:
            ``granularity_ids(m)``).

        Raises:
            RuntimeError: under torch.distributed, when the ranks' assignments differ.
        """
        x = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else embeddings
        x = np.asarray(x)
        n, d = self.info.num_samples, self.centroids.shape[1]
        if x.shape != (n, d):
            raise ValueError(f"{self.name}: expected ({n}, {d}) embeddings, got shape {x.shape}")
        results = []
        for m, k in enumerate(self.ks):
            labels, centroids, _ = spherical_kmeans(
                x, k, self.iterations, self.seed + m, self.nredo, self.faiss_device)
            ids, centroids = compact_clusters(labels, centroids)
            results.append((ids, centroids))
        if not all_ranks_agree(torch.from_numpy(np.concatenate([ids for ids, _ in results]))):
            raise RuntimeError(
                "k-means assignments differ between ranks: every rank must cluster the same "
                "gathered embeddings with the same seed (check that faiss is deterministic here)"
            )
        # installed only once every granularity is clustered: a failure leaves the old state
        for m, (ids, centroids) in enumerate(results):
            if m == 0:
                self._set_ids(ids)
            else:
                self.granularity_ids(m).copy_(torch.from_numpy(self._checked_ids(ids)))
            self.granularity_centroids(m).copy_(torch.from_numpy(centroids))
            self._granularity_clusters[m] = int(ids.max()) + 1
        self.refresh_epoch.fill_(int(epoch))
        return self.ids

    def _describe_extra(self) -> str:
        k = self.ks[0] if len(self.ks) == 1 else list(self.ks)
        text = f"k={k}, space={self.space}, every {self.period} epoch(s)"
        if self.warmup_epochs:
            text += f" after {self.warmup_epochs} warm-up epoch(s)"
        if not self.refreshed:
            return f"{text}; placeholder ids (one per image) until the first refresh"
        if len(self.ks) > 1:
            sizes = [self.granularity_num_clusters(m) for m in range(len(self.ks))]
            text += f"; clusters per granularity {sizes}"
        return text
