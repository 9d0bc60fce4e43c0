"""Cl-InfoNCE as a host method: a projector, a cluster provider and the cluster loss."""
from typing import Any, Optional, Sequence

import omegaconf
import torch
from omegaconf import OmegaConf, open_dict

from clinfonce_plugin.config import ConfigError, fill_defaults
from clinfonce_plugin.clusters.registry import CLUSTER_PROVIDERS, build_from_spec
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.methods.heads import PROJECTOR_KWARGS, ProjectionHeads
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.losses import cl_infonce
from clinfonce_plugin.methods.dynamic_clusters import DynamicClusters
from clinfonce_plugin.utils.distributed import all_gather_no_grad, get_rank, get_world_size
from clinfonce_plugin.methods.training_split import given_sample_info

METHOD_KWARGS = {
    **PROJECTOR_KWARGS,
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
    """Mean number of positives per anchor (other rows with the same id) in a gathered batch.
    The rows of each id are counted in the sorted ids (two binary searches), so nothing is
    read back to the host (``torch.unique`` does, to size its output)."""
    ordered = ids_gathered.sort().values
    counts = (torch.searchsorted(ordered, ids_gathered, right=True)
              - torch.searchsorted(ordered, ids_gathered))
    return (counts - 1).float().mean()


class ClInfoNCE(DynamicClusters, ProjectionHeads, BaseMethod):
    """Implements Cl-InfoNCE (https://arxiv.org/abs/2202.06670).

    Positives of an anchor are all other views whose cluster id equals the anchor's; the ids
    are owned by the cluster provider, the submodule ``provider``, as its buffer ``ids``
    indexed by dataset index (so they move with the model and are checkpointed once, as
    ``provider.ids``); a step looks its batch up with ``self.provider(indexes)``.

    Dynamic providers (``kmeans``, Sec. 4.4, Algorithm 1) are refreshed in
    ``on_train_epoch_start`` by ``DynamicClusters`` (the provider's schedule: after its
    ``warmup_epochs`` on instance clusters, i.e. SimCLR, then every ``period`` epochs): the
    training set is embedded once and clustered identically on every rank. Without warm-up
    the first clustering is of the randomly initialised network, as in Algorithm 1. The
    provider's buffers are in the checkpoint, so a resumed run keeps its clusters and
    reclusters only when the schedule says so.

    With several numbers of k-means clusters (``clusters.k`` a list, M granularities) the
    loss is the mean over granularities of Cl-InfoNCE with each granularity's ids (a choice
    of this plugin: the official code parses a list but its training step asserts one
    clustering; PCL averages its prototype term over granularities the same way).

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
                attributes, ``k`` (int or list)/``period``/``warmup_epochs``/... for kmeans.
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
        self.add_head("projector", "z", kw)
        self.instance_head: bool = kw.instance_head
        self.instance_weight: float = kw.instance_weight
        if self.instance_head:
            self.add_head("instance_projector", "z_instance", kw)

        self.provider = build_from_spec(
            OmegaConf.to_container(kw.clusters, resolve=True),
            given_sample_info("clinfonce", sample_info),
            embedding_dims={"backbone": self.features_dim, "projector": kw.proj_output_dim})
        # identical on every rank (static, or refreshed identically): DDP need not broadcast
        # the N-sized ids every step
        self._ddp_params_and_buffers_to_ignore = [
            f"provider.{name}" for name, _ in self.provider.named_buffers()]
        self.init_dynamic_clusters()

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

    def cluster_embedding(self, x: torch.Tensor) -> torch.Tensor:
        out = self(x)
        return out["feats"] if self.provider.space == "backbone" else out["z"]

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes = batch[0]
        out = super().training_step(batch, batch_idx)
        n_views = len(out["z"])
        z = torch.cat(out["z"])
        rows_gathered = z.size(0) * get_world_size()
        granularities = self.provider.num_granularities
        loss = z.new_zeros(())
        for m in range(granularities):
            # granularity 0 through forward: it checks the range of CPU indexes
            ids_m = (self.provider(indexes) if m == 0
                     else self.provider.granularity_ids(m)[indexes]).repeat(n_views)
            k_m = self.provider.granularity_num_clusters(m)
            loss = loss + cl_infonce(z, ids_m, self.temperature, form=self.loss_form,
                                     num_clusters=loss_num_clusters(k_m, rows_gathered))
            if m == 0:
                ids = ids_m
        loss = loss / granularities
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
        logs["num_clusters"] = float(self.provider.num_clusters)
        self.log_dict(logs, on_epoch=True, sync_dist=True)
        return total + out["loss"]
