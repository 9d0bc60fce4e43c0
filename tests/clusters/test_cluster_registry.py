"""CLUSTER_PROVIDERS registry, build_provider / build_from_spec, and the import rule."""
import ast
import pathlib

import numpy as np
import pytest

import clinfonce_plugin.clusters as clusters
from clinfonce_plugin.clusters import (
    CLUSTER_PROVIDERS,
    REQUIRED,
    ClusterProvider,
    SampleInfo,
    build_from_spec,
    build_provider,
)

STATIC = {"instance", "labels", "attributes", "hierarchy", "precomputed"}


def test_static_providers_registered_under_their_name():
    assert STATIC <= set(CLUSTER_PROVIDERS)
    for key, cls in CLUSTER_PROVIDERS.items():
        assert issubclass(cls, ClusterProvider)
        assert cls.name == key
    for key in STATIC:
        assert CLUSTER_PROVIDERS[key].dynamic is False


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        build_provider("x", SampleInfo(num_samples=1))
    assert str(err.value) == (
        f"unknown cluster provider 'x'. Choose from {sorted(CLUSTER_PROVIDERS)}"
    )
    with pytest.raises(ValueError, match=r"unknown cluster provider 'kmean'\. Choose from \["):
        build_from_spec({"provider": "kmean", "k": 2}, SampleInfo(num_samples=4))


def test_parameters_and_their_defaults():
    assert {name: cls.PARAMS for name, cls in CLUSTER_PROVIDERS.items() if name in STATIC} == {
        "instance": {},
        "labels": {},
        "attributes": {"k": REQUIRED},
        "hierarchy": {"pairs_file": None, "pairs": None, "level": REQUIRED},
        "precomputed": {"file": REQUIRED, "column": None, "k": None},
    }
    # a built provider holds the user's values over the defaults, the class defaults untouched
    info = SampleInfo(num_samples=3, labels=np.array([0, 1, 1]), class_names=["b", "c"])
    built = build_provider("hierarchy", info, pairs=[["a", "b"], ["a", "c"]], level=2)
    assert built.params == {"pairs_file": None, "pairs": [["a", "b"], ["a", "c"]], "level": 2}
    assert CLUSTER_PROVIDERS["hierarchy"].PARAMS["level"] is REQUIRED


def test_build_from_spec_reads_the_provider_key_and_its_parameters():
    info = SampleInfo(num_samples=4, labels=np.array([1, 0, 1, -1]),
                      attributes=np.array([[0, 1], [1, 1], [0, 0], [1, 0]]))
    spec = {"provider": "attributes", "k": 1}
    assert build_from_spec(spec, info).ids.tolist() == [0, 1, 0, 1]
    assert spec == {"provider": "attributes", "k": 1}  # the caller's mapping is left alone
    assert build_from_spec({"provider": "labels"}, info,
                           embedding_dims={"projector": 8}).ids.tolist() == [1, 0, 1, 2]
    with pytest.raises(ValueError, match=r"labels: unknown parameter\(s\) \['k'\]"):
        build_from_spec({"provider": "labels", "k": 1}, info)


def test_a_dynamic_provider_needs_the_embedding_dims():
    info = SampleInfo(num_samples=4)
    with pytest.raises(ValueError, match="kmeans: a dynamic provider needs the model's "
                                         "embedding_dims"):
        build_provider("kmeans", info, k=2)
    built = build_provider("kmeans", info, embedding_dims={"backbone": 6, "projector": 3}, k=2,
                           space="backbone")
    assert tuple(built.centroids.shape) == (2, 6)


def test_build_provider_forwards_params():
    info = SampleInfo(num_samples=4, labels=np.array([1, 0, 1, -1]),
                      attributes=np.array([[0, 1], [1, 1], [0, 0], [1, 0]]))
    assert build_provider("instance", info).ids.tolist() == [0, 1, 2, 3]
    assert build_provider("labels", info).ids.tolist() == [1, 0, 1, 2]
    # both columns have entropy 1; column 0 wins the tie; (0,1,0,1) -> two clusters
    assert build_provider("attributes", info, k=1).ids.tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match=r"attributes: unknown parameter\(s\) \['level'\]"):
        build_provider("attributes", info, k=1, level=2)


def test_registry_is_a_plain_dict_others_can_extend(monkeypatch):
    class Halves(ClusterProvider):
        name = "halves"
        PARAMS: dict = {}

        def _build(self):
            return (np.arange(self.info.num_samples) >= self.info.num_samples // 2).astype(int)

    monkeypatch.setitem(CLUSTER_PROVIDERS, "halves", Halves)
    assert build_provider("halves", SampleInfo(num_samples=4)).ids.tolist() == [0, 0, 1, 1]


def test_cluster_modules_import_no_host_lightning_or_hydra():
    forbidden = ("solo", "lightning", "pytorch_lightning", "hydra", "omegaconf",
                 "clinfonce_plugin.host")
    folder = pathlib.Path(clusters.__file__).parent
    for source in folder.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
                if node.level == 2 and (node.module or "").startswith("host"):
                    names = ["clinfonce_plugin.host"]
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden), f"{source.name} imports {name}"
