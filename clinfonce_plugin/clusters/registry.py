"""Name -> cluster provider class. The one place a provider is registered.

Add a provider by adding its class here under its ``name`` (the yaml value of
``method_kwargs.cluster_provider``); other modules may also extend the dict.
"""
from typing import Any, Dict, Type

from .attributes import AttributesProvider
from .base import ClusterProvider
from .hierarchy import HierarchyProvider
from .instance import InstanceProvider
from .kmeans import KMeansProvider
from .labels import LabelsProvider
from .precomputed import PrecomputedProvider
from .sample_info import SampleInfo

CLUSTER_PROVIDERS: Dict[str, Type[ClusterProvider]] = {
    "instance": InstanceProvider,
    "labels": LabelsProvider,
    "attributes": AttributesProvider,
    "hierarchy": HierarchyProvider,
    "precomputed": PrecomputedProvider,
    "kmeans": KMeansProvider,
}


def _lookup(name: str) -> Type[ClusterProvider]:
    if name not in CLUSTER_PROVIDERS:
        raise ValueError(
            f"unknown cluster provider {name!r}. Choose from {sorted(CLUSTER_PROVIDERS)}"
        )
    return CLUSTER_PROVIDERS[name]


def build_provider(name: str, info: SampleInfo, **params: Any) -> ClusterProvider:
    """Builds the provider registered as ``name`` over ``info`` with ``params``."""
    return _lookup(name)(info, **params)


def provider_params(name: str) -> Dict[str, Any]:
    """Parameters of provider ``name`` and their defaults (``REQUIRED`` if none)."""
    return dict(_lookup(name).PARAMS)
