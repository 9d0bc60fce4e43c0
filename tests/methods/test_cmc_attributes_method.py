"""cmc_attributes: the step is CMC's loss between each crop's projection and the image's
attribute embedding (binarised attribute vector through the attribute MLP), plus the probe;
gradients reach the backbone, the projector and the attribute MLP; a dataset without
attributes and bad kwargs are refused."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clinfonce_plugin import host
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.config import ConfigError
from tests.losses.test_cmc import loop_reference

# column 0 binary, column 1 three-valued (one-hot binarised into 3 columns), column 2 binary
ATTRIBUTES = np.array([[0, 2, 1], [1, 0, 0], [1, 1, 1], [0, 0, 0], [1, 2, 0], [0, 1, 1],
                       [1, 1, 0], [0, 2, 0]])
BINARISED = np.array([[0, 0, 0, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 0, 1], [0, 1, 0, 0, 0],
                      [1, 0, 0, 1, 0], [0, 0, 1, 0, 1], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0]])


def _info():
    return SampleInfo(num_samples=8, labels=np.arange(8) % 3, attributes=ATTRIBUTES,
                      attribute_names=["wing", "colour", "beak"])


def _model(cfg_factory, info=None, **kwargs):
    kwargs.setdefault("attr_hidden_dim", 12)
    cfg = cfg_factory("cmc_attributes", **kwargs)
    torch.manual_seed(0)
    model = host.METHODS["cmc_attributes"](cfg, sample_info=info or _info())
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def test_attribute_table_is_the_binarised_attribute_vector(cfg_factory):
    model = _model(cfg_factory)
    assert model.attribute_table.dtype == torch.uint8
    np.testing.assert_array_equal(model.attribute_table.numpy(), BINARISED)
    assert model.attribute_names == ["wing", "colour=0", "colour=1", "colour=2", "beak"]
    assert model.attribute_encoder[0].in_features == 5
    assert model.attribute_encoder[-1].out_features == model.projector[-1].out_features == 16
    assert "attribute_table" in model.state_dict()


def test_step_is_cmc_between_crops_and_attributes_plus_probe(cfg_factory):
    model = _model(cfg_factory).eval()
    g = torch.Generator().manual_seed(1)
    idx = torch.tensor([5, 0, 7, 2])  # dataset indexes, out of order
    crops = [torch.randn(4, 3, 32, 32, generator=g) for _ in range(2)]
    targets = idx % 3
    with torch.no_grad():
        loss = model.training_step((idx, crops, targets), 0)
        feats = [model.backbone(c) for c in crops]
        z = [model.projector(f) for f in feats]
        a = model.attribute_encoder(torch.as_tensor(BINARISED[idx.numpy()], dtype=torch.float32))
        probe = sum(F.cross_entropy(model.classifier(f), targets) for f in feats) / 2
    cmc = (loop_reference(z[0], a, 0.2) + loop_reference(z[1], a, 0.2)) / 2
    assert loss.item() == pytest.approx(cmc + probe.item(), rel=1e-5)


def test_equal_attribute_vectors_share_an_embedding(cfg_factory):
    # CMC uses the vector itself: two images with equal attributes are indistinguishable in
    # the attribute view (what Cl-InfoNCE's clusters make explicit)
    info = SampleInfo(num_samples=3, attributes=np.array([[1, 0], [1, 0], [0, 1]]))
    model = _model(cfg_factory, info)
    a = model.embed_attributes(torch.tensor([0, 1, 2]))
    torch.testing.assert_close(a[0], a[1])
    assert not torch.allclose(a[0], a[2])


def test_gradients_reach_backbone_projector_and_attribute_mlp(cfg_factory):
    model = _model(cfg_factory).train()
    batch = (torch.arange(6), [torch.randn(6, 3, 32, 32) for _ in range(2)], torch.zeros(6).long())
    model.training_step(batch, 0).backward()
    for name in ("backbone", "projector", "attribute_encoder"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in getattr(model, name).parameters()), name
    assert {g["name"] for g in model.learnable_params} == {
        "backbone", "classifier", "projector", "attribute_encoder"}


def test_a_dataset_without_attributes_is_refused(cfg_factory):
    with pytest.raises(ValueError, match="cmc_attributes needs an attribute vector per "
                                         "training image, but dataset 'synthetic_cub' provides "
                                         "none"):
        _model(cfg_factory, SampleInfo(num_samples=4, labels=np.zeros(4, dtype=int)))


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "method_kwargs.temperature must be > 0"),
    ({"attr_num_layers": 0}, "method_kwargs.attr_num_layers must be >= 1"),
    ({"clusters": {"provider": "attributes"}}, "unknown key"),
])
def test_bad_kwargs_are_refused(cfg_factory, kwargs, message):
    cfg = cfg_factory("cmc_attributes", **kwargs)
    with pytest.raises(ConfigError, match=message):
        host.METHODS["cmc_attributes"].add_and_assert_specific_cfg(cfg)


def test_defaults_are_filled(cfg_factory):
    cfg = cfg_factory("cmc_attributes")
    cfg = host.METHODS["cmc_attributes"].add_and_assert_specific_cfg(cfg)
    kw = cfg.method_kwargs
    assert (kw.attr_hidden_dim, kw.attr_num_layers, kw.proj_num_layers) == (512, 2, 2)
    assert math.isclose(kw.temperature, 0.2)  # the factory's value is kept
