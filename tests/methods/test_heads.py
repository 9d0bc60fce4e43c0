"""methods/heads.py: the projection heads every method with a projector builds through
``ProjectionHeads`` (outputs, parameter groups, state keys), and the training split's
metadata that the job, not the method, reads."""
import numpy as np
import pytest
import torch

from clinfonce_plugin import host
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.config import ConfigError
from clinfonce_plugin.host.method import make_method
from clinfonce_plugin.methods import PLUGIN_METHODS
from clinfonce_plugin.methods.heads import PROJECTOR_KWARGS, ProjectionHeads

N = 12


def _info():
    """N images whose 4 binary attributes are the bits of their index."""
    bits = (np.arange(N)[:, None] >> np.arange(4)) & 1
    return SampleInfo(num_samples=N, labels=np.arange(N) % 3, attributes=bits,
                      attribute_names=[f"bit{i}" for i in range(4)])


def test_every_method_with_proj_keys_builds_its_heads_through_the_mixin():
    from importlib import import_module

    with_projector = set()
    for name, cls in PLUGIN_METHODS.items():
        defaults = import_module(cls.__module__).METHOD_KWARGS
        if "proj_hidden_dim" in defaults:
            with_projector.add(name)
            assert issubclass(cls, ProjectionHeads), name
            # the proj_* defaults are the one table's values
            assert {k: defaults[k] for k in PROJECTOR_KWARGS} == PROJECTOR_KWARGS
        else:
            assert not issubclass(cls, ProjectionHeads), name
    assert with_projector == {"clinfonce", "pcl", "wcl", "cmc_attributes"}


@pytest.mark.parametrize("instance_head", [False, True])
def test_heads_add_their_outputs_and_parameter_groups_in_order(cfg_factory, instance_head):
    cfg = cfg_factory("clinfonce", clusters={"provider": "attributes", "k": 3},
                      instance_head=instance_head)
    model = host.METHODS["clinfonce"](cfg, sample_info=_info()).eval()
    names = ["projector"] + (["instance_projector"] if instance_head else [])
    keys = ["z"] + (["z_instance"] if instance_head else [])
    assert [name for name, _ in model.heads] == names
    groups = [g["name"] for g in model.learnable_params]
    assert groups[-len(names):] == names
    x = torch.rand(3, 3, 32, 32)
    out = model(x)
    with torch.no_grad():
        feats = model.backbone(x)
        for name, key in zip(names, keys):
            # the head's output is its own MLP applied to the backbone features
            assert torch.allclose(out[key], getattr(model, name)(feats), atol=1e-6)
            head = getattr(model, name)
            linears = [m for m in head if isinstance(m, torch.nn.Linear)]
            assert [(m.in_features, m.out_features) for m in linears] == [
                (model.features_dim, cfg.method_kwargs.proj_hidden_dim),
                (cfg.method_kwargs.proj_hidden_dim, cfg.method_kwargs.proj_output_dim)]
    assert all(f"{name}.0.weight" in model.state_dict() for name in names)


def test_wcl_heads_follow_the_ablation(cfg_factory):
    for ablation, names in (("instance", ["projector"]), ("weak_only", ["weak_projector"]),
                            ("one_head", ["projector"]),
                            ("two_heads", ["projector", "weak_projector"])):
        cfg = cfg_factory("wcl", ablation=ablation, knn_multicrop=False)
        model = host.METHODS["wcl"](cfg, sample_info=SampleInfo(num_samples=4))
        assert [name for name, _ in model.heads] == names, ablation
        batch_norms = [m for m in getattr(model, names[0])
                       if isinstance(m, torch.nn.BatchNorm1d)]
        assert len(batch_norms) == 1  # proj_batch_norm defaults to true for wcl


def test_a_method_built_without_the_split_metadata_is_refused(cfg_factory):
    cfg = cfg_factory("clinfonce", clusters={"provider": "attributes", "k": 3})
    with pytest.raises(ConfigError, match="method clinfonce: .*training split's metadata"):
        make_method(cfg)  # no sample_info: the method does not open cfg.data itself


def test_a_refresh_without_the_embedding_dataset_is_refused(cfg_factory):
    cfg = cfg_factory("clinfonce", clusters={"provider": "kmeans", "k": 3})
    model = host.METHODS["clinfonce"](cfg, sample_info=SampleInfo(num_samples=N))
    assert model.embedding_dataset is None
    with pytest.raises(ValueError, match="sets embedding_dataset"):
        model.refresh_clusters(0)
