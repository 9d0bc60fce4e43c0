"""Cluster providers: sample index -> cluster id, the positives of Cl-InfoNCE.

See ``registry.CLUSTER_PROVIDERS`` for the available providers.
"""
from .attributes import attribute_cluster_ids
from .base import REQUIRED, ClusterProvider, contiguous
from .registry import CLUSTER_PROVIDERS, build_from_spec, build_provider
from .sample_info import SampleInfo

__all__ = [
    "CLUSTER_PROVIDERS",
    "REQUIRED",
    "ClusterProvider",
    "SampleInfo",
    "attribute_cluster_ids",
    "build_from_spec",
    "build_provider",
    "contiguous",
]
