"""Cl-InfoNCE as a host method: a projector, a cluster provider and the cluster loss."""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import omegaconf
import torch
from omegaconf import OmegaConf, open_dict

from clinfonce_plugin.cfgcheck import ConfigError, fill_defaults
from clinfonce_plugin.clusters.registry import CLUSTER_PROVIDERS, build_provider
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.losses import cl_infonce
from clinfonce_plugin.utils.distributed import all_gather_no_grad, get_rank, get_world_size

from ._common import loss_num_clusters, mean_positives, mlp, training_sample_info

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


class ClInfoNCE(BaseMethod):
    """Implements Cl-InfoNCE (https://arxiv.org/abs/2202.06670).

    Positives of an anchor are all other views whose cluster id equals the anchor's; the ids
    come from a cluster provider and live in the ``cluster_ids`` buffer indexed by dataset
    index (so they move with the model and are checkpointed).

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int): hidden units of the projector g (paper: 2048).
            proj_output_dim (int): output dimension of g (paper: 128).
            proj_num_layers (int): linear layers of g (2: feats-2048-128, the paper's head).
            temperature (float): softmax temperature tau (paper: 0.1 on CUB).
            loss_form (str): "out" (log-prob averaged over positives, the official
                Cl-InfoNCE form) or "in" (positives summed inside the log, solo's form).
            clusters (dict): ``provider`` (instance | labels | attributes | hierarchy |
                precomputed) and that provider's parameters, e.g. ``k`` for attributes.
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

        clusters = OmegaConf.to_container(kw.clusters, resolve=True)
        provider_name = clusters.pop("provider")
        info = training_sample_info(cfg, sample_info)
        self.provider = build_provider(provider_name, info, **clusters)
        self.register_buffer("cluster_ids", torch.tensor(np.asarray(self.provider.ids), dtype=torch.long))
        self.num_clusters: int = int(self.provider.num_clusters)

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
            provider = kw.clusters.get("provider")
            if provider not in CLUSTER_PROVIDERS:
                raise ConfigError(f"unknown cluster provider {provider!r} in "
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

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes = batch[0]
        out = super().training_step(batch, batch_idx)
        n_views = len(out["z"])
        z = torch.cat(out["z"])
        ids = self.cluster_ids[indexes].repeat(n_views)
        rows_gathered = z.size(0) * get_world_size()
        loss = cl_infonce(z, ids, self.temperature, form=self.loss_form,
                          num_clusters=loss_num_clusters(self.num_clusters, rows_gathered))
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
        logs["num_clusters"] = float(self.num_clusters)
        self.log_dict(logs, on_epoch=True, sync_dist=True)
        return total + out["loss"]
