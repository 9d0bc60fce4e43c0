"""The "clusters + cross-entropy" baseline of Cl-InfoNCE (Table 2): predict cluster ids."""
from typing import Any, Dict, List, Optional, Sequence

import omegaconf
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict

from clinfonce_plugin.config import ConfigError, fill_defaults
from clinfonce_plugin.clusters.registry import CLUSTER_PROVIDERS, build_from_spec
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.host import BaseMethod
from clinfonce_plugin.methods.training_split import given_sample_info

METHOD_KWARGS = {"clusters": {"provider": "attributes"}}


class ClusterCE(BaseMethod):
    """Implements the attributes-determined-clusters + cross-entropy baseline of Cl-InfoNCE
    (https://arxiv.org/abs/2202.06670, Table 2): a linear classifier on the backbone
    features is trained with cross-entropy to predict each view's cluster id.

    Extra cfg settings:
        method_kwargs:
            clusters (dict): ``provider`` and its parameters, as for ``clinfonce``.
    """

    uses_sample_info = True

    def __init__(self, cfg: omegaconf.DictConfig, sample_info: Optional[SampleInfo] = None):
        super().__init__(cfg)
        spec = OmegaConf.to_container(cfg.method_kwargs.clusters, resolve=True)
        cls = CLUSTER_PROVIDERS.get(spec.get("provider"))
        if cls is not None and cls.dynamic:
            # the class head is sized by the provider at construction and no refresh hook
            # runs here: a dynamic provider would train on its placeholder ids
            raise ValueError(f"cluster_ce supports static cluster providers only, got "
                             f"{spec['provider']!r}; use clinfonce for k-means clusters")
        self.provider = build_from_spec(spec, given_sample_info("cluster_ce", sample_info))
        # identical on every rank (static, or refreshed identically): DDP need not broadcast
        # the N-sized ids every step
        self._ddp_params_and_buffers_to_ignore = [
            f"provider.{name}" for name, _ in self.provider.named_buffers()]
        self.cluster_head = nn.Linear(self.features_dim, self.provider.num_clusters)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = super(ClusterCE, ClusterCE).add_and_assert_specific_cfg(cfg)
        with open_dict(cfg):
            fill_defaults(cfg, "method_kwargs", METHOD_KWARGS)
            provider = cfg.method_kwargs.clusters.get("provider")
            if provider not in CLUSTER_PROVIDERS:
                raise ConfigError(f"unknown cluster provider {provider!r} in "
                                  f"method_kwargs.clusters.provider. "
                                  f"Choose from {sorted(CLUSTER_PROVIDERS)}")
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return super().learnable_params + [{"name": "cluster_head",
                                            "params": self.cluster_head.parameters()}]

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes = batch[0]
        out = super().training_step(batch, batch_idx)
        ids = self.provider(indexes)
        logits = [self.cluster_head(f) for f in out["feats"]]
        ce = sum(F.cross_entropy(lg, ids) for lg in logits) / len(logits)
        acc = sum((lg.argmax(1) == ids).float().mean() for lg in logits) / len(logits)
        self.log_dict({"train_cluster_ce": ce, "train_cluster_acc": acc,
                       "num_clusters": float(self.cluster_head.out_features)},
                      on_epoch=True, sync_dist=True)
        return ce + out["loss"]
