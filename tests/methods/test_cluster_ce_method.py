"""cluster_ce: cross-entropy on the provider's cluster ids through a linear head."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin import host
from clinfonce_plugin.config import ConfigError
from clinfonce_plugin.clusters.sample_info import SampleInfo


def _model(cfg_factory, clusters):
    info = SampleInfo(num_samples=10, labels=np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 3]),
                      attributes=(np.arange(10)[:, None] >> np.arange(2)) & 1,
                      attribute_names=["a", "b"])
    cfg = cfg_factory("cluster_ce", clusters=clusters)
    for key in ("proj_hidden_dim", "proj_output_dim", "temperature"):
        del cfg.method_kwargs[key]
    model = host.METHODS["cluster_ce"](cfg, sample_info=info).eval()
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def test_step_is_cross_entropy_on_cluster_ids_plus_probe(cfg_factory):
    model = _model(cfg_factory, {"provider": "labels"})
    assert model.cluster_head.out_features == 4
    g = torch.Generator().manual_seed(0)
    idx = torch.tensor([9, 0, 4, 2])
    crops = [torch.randn(4, 3, 32, 32, generator=g) for _ in range(2)]
    targets = torch.tensor([3, 0, 1, 2])
    with torch.no_grad():
        feats = [model.backbone(c) for c in crops]
        ce = sum(F.cross_entropy(model.cluster_head(f), targets) for f in feats) / 2
        probe = sum(F.cross_entropy(model.classifier(f), targets) for f in feats) / 2
        loss = model.training_step((idx, crops, targets), 0)
    assert loss.item() == pytest.approx((ce + probe).item(), abs=1e-5)


def test_gradients_reach_backbone_and_cluster_head(cfg_factory):
    model = _model(cfg_factory, {"provider": "attributes", "k": 2}).train()
    batch = (torch.arange(6), [torch.randn(6, 3, 32, 32) for _ in range(2)], torch.zeros(6).long())
    model.training_step(batch, 0).backward()
    assert model.cluster_head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    assert "cluster_head" in {g["name"] for g in model.learnable_params}


def test_unknown_provider_and_key_are_rejected(cfg_factory):
    cfg = cfg_factory("cluster_ce", clusters={"provider": "nope"})
    for key in ("proj_hidden_dim", "proj_output_dim", "temperature"):
        del cfg.method_kwargs[key]
    with pytest.raises(ConfigError, match="unknown cluster provider 'nope'"):
        host.METHODS["cluster_ce"].add_and_assert_specific_cfg(cfg)
    cfg = cfg_factory("cluster_ce", clusters={"provider": "labels"})
    with pytest.raises(ConfigError, match="unknown key"):
        host.METHODS["cluster_ce"].add_and_assert_specific_cfg(cfg)


def test_dynamic_provider_is_refused(cfg_factory):
    with pytest.raises(ValueError, match="static cluster providers only, got 'kmeans'"):
        _model(cfg_factory, {"provider": "kmeans", "k": 2})


def test_the_provider_holds_the_only_copy_of_the_ids(cfg_factory):
    model = _model(cfg_factory, {"provider": "labels"})
    state = model.state_dict()
    assert state["provider.ids"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]
    assert [k for k in state if "ids" in k] == ["provider.ids"]
