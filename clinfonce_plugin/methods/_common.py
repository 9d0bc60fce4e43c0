"""Pieces shared by the plugin's methods: projector MLPs, cluster lookup tables, and the
training set's side information."""
from typing import Optional

import omegaconf
import torch
import torch.nn as nn

from clinfonce_plugin.clusters.sample_info import SampleInfo


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
        batch_norm: bool = False) -> nn.Sequential:
    """Projection head: ``num_layers`` linear layers, ReLU (and BN) between them."""
    if num_layers < 1:
        raise ValueError(f"projector needs at least one layer, got num_layers={num_layers}")
    layers = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


def training_sample_info(cfg: omegaconf.DictConfig, sample_info: Optional[SampleInfo]) -> SampleInfo:
    """The training split's SampleInfo: given, or read from ``cfg.data`` with the data registry."""
    if sample_info is not None:
        return sample_info
    from clinfonce_plugin.data.registry import build_dataset

    _, info, _ = build_dataset(cfg.data.dataset, cfg.data.train_path, split="train")
    return info


def loss_num_clusters(num_clusters: int, rows_gathered: int) -> Optional[int]:
    """Pass the id range to the loss only when its per-cluster table is not larger than the
    gathered batch; otherwise let the loss compact the ids of the batch (torch.unique)."""
    return num_clusters if num_clusters <= 2 * rows_gathered else None


def mean_positives(ids_gathered: torch.Tensor) -> torch.Tensor:
    """Mean number of positives per anchor (other rows with the same id) in a gathered batch."""
    _, inverse, counts = torch.unique(ids_gathered, return_inverse=True, return_counts=True)
    return (counts[inverse] - 1).float().mean()


def provider_from_cfg(cfg: omegaconf.DictConfig, sample_info: Optional[SampleInfo]):
    """The cluster provider named by ``method_kwargs.clusters`` over the training set."""
    from omegaconf import OmegaConf

    from clinfonce_plugin.clusters.registry import build_provider

    params = OmegaConf.to_container(cfg.method_kwargs.clusters, resolve=True)
    name = params.pop("provider")
    return build_provider(name, training_sample_info(cfg, sample_info), **params)


def check_provider_name(cfg: omegaconf.DictConfig) -> None:
    from clinfonce_plugin.cfgcheck import ConfigError
    from clinfonce_plugin.clusters.registry import CLUSTER_PROVIDERS

    provider = cfg.method_kwargs.clusters.get("provider")
    if provider not in CLUSTER_PROVIDERS:
        raise ConfigError(f"unknown cluster provider {provider!r} in "
                          f"method_kwargs.clusters.provider. Choose from {sorted(CLUSTER_PROVIDERS)}")
