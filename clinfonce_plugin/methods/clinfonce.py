"""Cl-InfoNCE as a host method: a projector, a cluster provider and the cluster loss."""
import time
from typing import Any, Dict, List, Optional, Sequence

import omegaconf
import torch
from omegaconf import OmegaConf, open_dict

from clinfonce_plugin.config import ConfigError, fill_defaults
from clinfonce_plugin.clusters.embedding_pass import embed_dataset, label_metrics
from clinfonce_plugin.data.indexed import TransformedImages
from clinfonce_plugin.clusters.registry import CLUSTER_PROVIDERS, build_from_spec
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.heads import mlp
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.losses import cl_infonce
from clinfonce_plugin.data.registry import training_sample_info
from clinfonce_plugin.utils.distributed import all_gather_no_grad, get_rank, get_world_size

METHOD_KWARGS = {
    "proj_hidden_dim": 2048,
    "proj_output_dim": 128,
    "proj_num_layers": 2,
    "temperature": 0.1,
    "loss_form": "out",
    "clusters": {"provider": "attributes"},
    "instance_head": False,
    "instance_weight": 1.0,
}


def loss_num_clusters(num_clusters: int, rows_gathered: int) -> Optional[int]:
    """Pass the id range to the loss only when its per-cluster table is not larger than the
    gathered batch; otherwise let the loss compact the ids of the batch (torch.unique)."""
    return num_clusters if num_clusters <= 2 * rows_gathered else None


def mean_positives(ids_gathered: torch.Tensor) -> torch.Tensor:
    """Mean number of positives per anchor (other rows with the same id) in a gathered batch."""
    _, inverse, counts = torch.unique(ids_gathered, return_inverse=True, return_counts=True)
    return (counts[inverse] - 1).float().mean()


class ClInfoNCE(BaseMethod):
    """Implements Cl-InfoNCE (https://arxiv.org/abs/2202.06670).

    Positives of an anchor are all other views whose cluster id equals the anchor's; the ids
    are owned by the cluster provider, the submodule ``provider``, as its buffer ``ids``
    indexed by dataset index (so they move with the model and are checkpointed once, as
    ``provider.ids``); a step looks its batch up with ``self.provider(indexes)``.

    Dynamic providers (``kmeans``, Sec. 4.4, Algorithm 1) are refreshed in
    ``on_train_epoch_start``, before epochs 0, period, 2 * period, ...: the training set is
    embedded once (resize + centre crop, the network in eval mode, sharded over ranks and
    gathered) and clustered identically on every rank. Before epoch 0 this is the randomly
    initialised network, as in Algorithm 1. The provider's ``centroids`` and ``refresh_epoch``
    buffers join its ``ids`` in the checkpoint, so a resumed run keeps its clusters and
    reclusters only when the schedule says so. Each refresh logs
    ``kmeans_num_clusters`` and, when labels are known, ``kmeans_mi`` = I(Z;T) and
    ``kmeans_cond_entropy`` = H(Z|T) in bits, and ``kmeans_refresh_seconds``.

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int): hidden units of the projector g (paper: 2048).
            proj_output_dim (int): output dimension of g (paper: 128).
            proj_num_layers (int): linear layers of g (2: feats-2048-128, the paper's head).
            temperature (float): softmax temperature tau (paper: 0.1 on CUB).
            loss_form (str): "out" (log-prob averaged over positives, the official
                Cl-InfoNCE form) or "in" (positives summed inside the log, solo's form).
            clusters (dict): ``provider`` (instance | labels | attributes | hierarchy |
                precomputed | kmeans) and that provider's parameters, e.g. ``k`` for
                attributes, ``k``/``period``/``space``/... for kmeans.
            instance_head (bool): add a second projector trained with instance InfoNCE
                (the dual-head variant, Cl-InfoNCE App. A.1).
            instance_weight (float): weight of the instance loss when instance_head is on.
    """

    uses_sample_info = True  # the constructor accepts the training set's SampleInfo

    def __init__(self, cfg: omegaconf.DictConfig, sample_info: Optional[SampleInfo] = None):
        super().__init__(cfg)
        kw = cfg.method_kwargs
        self.temperature: float = kw.temperature
        self.loss_form: str = kw.loss_form
        self.projector = mlp(self.features_dim, kw.proj_hidden_dim, kw.proj_output_dim,
                             kw.proj_num_layers)
        self.instance_head: bool = kw.instance_head
        self.instance_weight: float = kw.instance_weight
        if self.instance_head:
            self.instance_projector = mlp(self.features_dim, kw.proj_hidden_dim,
                                          kw.proj_output_dim, kw.proj_num_layers)

        self.provider = build_from_spec(
            OmegaConf.to_container(kw.clusters, resolve=True),
            training_sample_info(cfg, sample_info),
            embedding_dims={"backbone": self.features_dim, "projector": kw.proj_output_dim})
        # identical on every rank (static, or refreshed identically): DDP need not broadcast
        # the N-sized ids every step
        self._ddp_params_and_buffers_to_ignore = [
            f"provider.{name}" for name, _ in self.provider.named_buffers()]
        if self.provider.dynamic:
            # (image tensor, target) items of the training set in dataset order; built from
            # cfg.data on the first refresh unless set beforehand (tests, benchmarks)
            self.embedding_dataset: Optional[torch.utils.data.Dataset] = None
            self.last_refresh: Dict[str, float] = {}

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = super(ClInfoNCE, ClInfoNCE).add_and_assert_specific_cfg(cfg)
        with open_dict(cfg):
            kw = fill_defaults(cfg, "method_kwargs", METHOD_KWARGS)
            if kw.temperature <= 0:
                raise ConfigError(f"method_kwargs.temperature must be > 0, got {kw.temperature}")
            if kw.loss_form not in ("out", "in"):
                raise ConfigError(f"method_kwargs.loss_form must be 'out' or 'in', "
                                  f"got {kw.loss_form!r}")
            if kw.clusters.get("provider") not in CLUSTER_PROVIDERS:
                raise ConfigError(f"unknown cluster provider {kw.clusters.get('provider')!r} in "
                                  f"method_kwargs.clusters.provider. "
                                  f"Choose from {sorted(CLUSTER_PROVIDERS)}")
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        extra = [{"name": "projector", "params": self.projector.parameters()}]
        if self.instance_head:
            extra.append({"name": "instance_projector",
                          "params": self.instance_projector.parameters()})
        return super().learnable_params + extra

    def _project(self, out: Dict[str, Any]) -> Dict[str, Any]:
        out.update({"z": self.projector(out["feats"])})
        if self.instance_head:
            out.update({"z_instance": self.instance_projector(out["feats"])})
        return out

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().forward(X))

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().multicrop_forward(X))

    # ------------------------------------------------------------ dynamic clusters
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
            # imported here: the data registry and transforms are only needed by this pass
            from clinfonce_plugin.data.registry import open_split
            from clinfonce_plugin.data.transforms import eval_transform

            base = open_split(self.cfg.data, "train").dataset
            self.embedding_dataset = TransformedImages(base, eval_transform(self.cfg))
        if len(self.embedding_dataset) != self.provider.ids.numel():
            raise ValueError(f"the embedding dataset has {len(self.embedding_dataset)} images, "
                             f"the clusters cover {self.provider.ids.numel()}")
        return self.embedding_dataset

    def _cluster_embedding(self, x: torch.Tensor) -> torch.Tensor:
        out = self(x)
        return out["feats"] if self.provider.space == "backbone" else out["z"]

    @torch.no_grad()
    def refresh_clusters(self, epoch: int) -> Dict[str, float]:
        """Embeds the training set, reclusters it and installs the new ids (every rank)."""
        start = time.perf_counter()
        modes = {m: m.training for m in self.modules()}
        self.eval()  # BN running statistics, no dropout: a deterministic pass
        trainer = getattr(self, "_trainer", None)
        context = trainer.precision_plugin.forward_context if trainer is not None else None
        try:
            emb = embed_dataset(self._cluster_embedding, self._train_images(),
                                self.provider.centroids.shape[1],
                                int(self.cfg.optimizer.batch_size),
                                int(self.cfg.data.get("num_workers", 0) or 0), self.device,
                                context)
        finally:
            for module, mode in modes.items():
                module.training = mode
        embed_seconds = time.perf_counter() - start
        ids = self.provider.refresh(emb, epoch).cpu().numpy()
        fit_seconds = time.perf_counter() - start - embed_seconds
        metrics = label_metrics(ids, self.provider.info.labels)
        metrics["kmeans_refresh_seconds"] = time.perf_counter() - start
        self.last_refresh = dict(metrics, epoch=float(epoch), embed_seconds=embed_seconds,
                                 fit_seconds=fit_seconds)
        if trainer is not None:
            # identical on every rank already: no sync needed
            self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=False)
        if get_rank() == 0:
            info = ", ".join(f"{k[len('kmeans_'):]}={v:.4g}" for k, v in metrics.items())
            print(f"[clinfonce] k-means before epoch {epoch}: {info} "
                  f"(embedding pass {embed_seconds:.2f} s, k-means {fit_seconds:.2f} s)")
        return metrics

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes = batch[0]
        out = super().training_step(batch, batch_idx)
        n_views = len(out["z"])
        z = torch.cat(out["z"])
        ids = self.provider(indexes).repeat(n_views)
        num_clusters = self.provider.num_clusters
        rows_gathered = z.size(0) * get_world_size()
        loss = cl_infonce(z, ids, self.temperature, form=self.loss_form,
                          num_clusters=loss_num_clusters(num_clusters, rows_gathered))
        logs = {"train_clinfonce_loss": loss}
        total = loss
        if self.instance_head:
            # instance ids made contiguous across ranks: rank r owns r*B .. r*B+B-1
            b = indexes.size(0)
            inst = (torch.arange(b, device=indexes.device) + get_rank() * b).repeat(n_views)
            inst_loss = cl_infonce(torch.cat(out["z_instance"]), inst, self.temperature,
                                   form=self.loss_form, num_clusters=b * get_world_size())
            logs["train_instance_loss"] = inst_loss
            total = total + self.instance_weight * inst_loss
        with torch.no_grad():
            logs["train_mean_positives"] = mean_positives(all_gather_no_grad(ids))
        logs["num_clusters"] = float(num_clusters)
        self.log_dict(logs, on_epoch=True, sync_dist=True)
        return total + out["loss"]
