"""Cluster providers: sample index -> cluster id, the positives of Cl-InfoNCE.

See ``registry.CLUSTER_PROVIDERS`` for the available providers.
"""
from .attributes import attribute_cluster_ids
from .base import REQUIRED, ClusterProvider, contiguous
from .registry import CLUSTER_PROVIDERS, build_provider, provider_params
from .sample_info import SampleInfo

__all__ = [
    "CLUSTER_PROVIDERS",
    "REQUIRED",
    "ClusterProvider",
    "SampleInfo",
    "attribute_cluster_ids",
    "build_provider",
    "contiguous",
    "provider_params",
]
