"""The refresh of a method's dynamic cluster provider (k-means), shared by the methods that
train on k-means clusters (``clinfonce``, ``pcl``)."""
import time
from typing import Any, Dict, Optional

import torch

from clinfonce_plugin.clusters.embedding_pass import embed_dataset, label_metrics
from clinfonce_plugin.utils.distributed import get_rank


def granularity_metrics(provider) -> Dict[str, float]:
    """``label_metrics`` of every granularity of ``provider``: granularity 0's keys as they
    are (``kmeans_mi``, ...), granularity m's with the suffix ``_m``."""
    labels = provider.info.labels
    metrics: Dict[str, float] = {}
    for m in range(provider.num_granularities):
        ids = provider.granularity_ids(m).cpu().numpy()
        suffix = "" if m == 0 else f"_{m}"
        metrics.update({f"{key}{suffix}": value
                        for key, value in label_metrics(ids, labels).items()})
    return metrics


class DynamicClusters:
    """Mixin of a host ``BaseMethod`` whose cluster provider is the submodule ``provider``:
    refreshes a dynamic provider (``kmeans``, Cl-InfoNCE Sec. 4.4, Algorithm 1) in
    ``on_train_epoch_start`` when its schedule says so.

    A refresh embeds the training set once (resize + centre crop, the network in eval mode,
    sharded over ranks and gathered), has the provider cluster it identically on every rank,
    then calls ``clusters_refreshed(embeddings, epoch)``, where a method derives more state
    from the same embeddings. It logs ``kmeans_num_clusters`` and, when labels are known,
    ``kmeans_mi`` = I(Z;T) and ``kmeans_cond_entropy`` = H(Z|T) in bits and ``kmeans_purity``
    (granularity m >= 1: the same keys with the suffix ``_m``), and
    ``kmeans_refresh_seconds``.

    The class using it calls ``init_dynamic_clusters()`` after building ``self.provider`` and
    defines ``cluster_embedding(x)``, the (B, d) embeddings of the clustered space.
    """

    log_prefix = "clinfonce"

    def init_dynamic_clusters(self) -> None:
        if self.provider.dynamic:
            # (image tensor, target) items of the training set in dataset order, set by the
            # job that trains the method from the split it read (run/pretrain.py)
            self.embedding_dataset: Optional[torch.utils.data.Dataset] = None
            self.last_refresh: Dict[str, float] = {}

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.provider.dynamic:
            self.maybe_refresh_clusters(self.current_epoch)

    def maybe_refresh_clusters(self, epoch: int) -> bool:
        """Refreshes the clusters if the schedule says so before ``epoch``; returns whether."""
        if not self.provider.due(epoch):
            return False
        self.refresh_clusters(epoch)
        return True

    def _train_images(self) -> torch.utils.data.Dataset:
        if self.embedding_dataset is None:
            raise ValueError("a k-means refresh embeds the training set: the job training this "
                             "method sets embedding_dataset (the split it read, under the "
                             "deterministic transform) before the first epoch")
        if len(self.embedding_dataset) != self.provider.ids.numel():
            raise ValueError(f"the embedding dataset has {len(self.embedding_dataset)} images, "
                             f"the clusters cover {self.provider.ids.numel()}")
        return self.embedding_dataset

    def cluster_embedding(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def clusters_refreshed(self, embeddings: torch.Tensor, epoch: int) -> Dict[str, float]:
        """Hook run after each refresh with the (N, d) embeddings the provider clustered;
        returns metrics to log with the refresh's. Nothing by default."""
        return {}

    @torch.no_grad()
    def refresh_clusters(self, epoch: int) -> Dict[str, float]:
        """Embeds the training set, reclusters it and installs the new ids (every rank)."""
        start = time.perf_counter()
        modes = {m: m.training for m in self.modules()}
        self.eval()  # BN running statistics, no dropout: a deterministic pass
        trainer: Any = getattr(self, "_trainer", None)
        context = trainer.precision_plugin.forward_context if trainer is not None else None
        try:
            emb = embed_dataset(self.cluster_embedding, self._train_images(),
                                self.provider.centroids.shape[1],
                                int(self.cfg.optimizer.batch_size),
                                int(self.cfg.data.num_workers), self.device,
                                context)
        finally:
            for module, mode in modes.items():
                module.training = mode
        embed_seconds = time.perf_counter() - start
        self.provider.refresh(emb, epoch)
        fit_seconds = time.perf_counter() - start - embed_seconds
        metrics = granularity_metrics(self.provider)
        metrics.update(self.clusters_refreshed(emb, epoch))
        metrics["kmeans_refresh_seconds"] = time.perf_counter() - start
        self.last_refresh = dict(metrics, epoch=float(epoch), embed_seconds=embed_seconds,
                                 fit_seconds=fit_seconds)
        if trainer is not None:
            # identical on every rank already: no sync needed
            self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=False)
        if get_rank() == 0:
            info = ", ".join(f"{k[len('kmeans_'):] if k.startswith('kmeans_') else k}={v:.4g}"
                             for k, v in metrics.items())
            print(f"[{self.log_prefix}] k-means before epoch {epoch}: {info} "
                  f"(embedding pass {embed_seconds:.2f} s, k-means {fit_seconds:.2f} s)")
        return metrics


__all__ = ["DynamicClusters", "granularity_metrics"]
