"""Name -> cluster provider class. The one place a provider is registered.

Add a provider by adding its class here under its ``name`` (the yaml value of
``method_kwargs.clusters.provider``); other modules may also extend the dict.
"""
from typing import Any, Dict, Mapping, Optional, Type

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


def build_provider(name: str, info: SampleInfo,
                   embedding_dims: Optional[Mapping[str, int]] = None,
                   **params: Any) -> ClusterProvider:
    """Builds the provider registered as ``name`` over ``info`` with ``params``.

    Args:
        name: a key of ``CLUSTER_PROVIDERS``.
        info: the training set's SampleInfo.
        embedding_dims: the dimension of each embedding space of the model, e.g.
            ``{"backbone": 512, "projector": 128}``; required by dynamic providers (they
            cluster those embeddings), not used by static ones.
        **params: the provider's parameters (its ``PARAMS``).
    """
    if name not in CLUSTER_PROVIDERS:
        raise ValueError(
            f"unknown cluster provider {name!r}. Choose from {sorted(CLUSTER_PROVIDERS)}"
        )
    cls = CLUSTER_PROVIDERS[name]
    if cls.dynamic:
        if embedding_dims is None:
            raise ValueError(f"{name}: a dynamic provider needs the model's embedding_dims")
        return cls(info, embedding_dims=embedding_dims, **params)
    return cls(info, **params)  # static ids do not depend on the model


def build_from_spec(spec: Mapping[str, Any], info: SampleInfo,
                    embedding_dims: Optional[Mapping[str, int]] = None) -> ClusterProvider:
    """Builds the provider a plain mapping ``{"provider": name, **params}`` describes (a
    method's ``method_kwargs.clusters``); see ``build_provider``."""
    params = dict(spec)
    name = params.pop("provider", None)
    return build_provider(name, info, embedding_dims, **params)
