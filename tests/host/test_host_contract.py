"""The host contract of DESIGN.md, checked against whichever host is resolved (solo-learn when
installed, the bundled runtime otherwise): names, signatures and behaviour."""
import inspect

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

import clinfonce_plugin
from clinfonce_plugin import host


def test_contract_names_exist():
    for name in ("BaseMethod", "METHODS", "parse_cfg", "build_transform_pipeline",
                 "NCropAugmentation", "FullTransformPipeline"):
        assert getattr(host, name) is not None, name
    assert host.HOST_NAME in ("solo-learn", "runtime")


def test_base_method_is_lightning_module_with_contract_signatures():
    base = host.BaseMethod
    assert issubclass(base, pl.LightningModule)
    assert list(inspect.signature(base.__init__).parameters)[:2] == ["self", "cfg"]
    assert isinstance(inspect.getattr_static(base, "learnable_params"), property)
    assert isinstance(inspect.getattr_static(base, "add_and_assert_specific_cfg"), staticmethod)
    for method, params in (("forward", ["self", "X"]), ("multicrop_forward", ["self", "X"]),
                           ("training_step", ["self", "batch", "batch_idx"])):
        assert list(inspect.signature(getattr(base, method)).parameters)[:len(params)] == params
    assert len(inspect.signature(host.parse_cfg).parameters) == 1
    assert list(inspect.signature(host.build_transform_pipeline).parameters) == ["dataset", "cfg"]


def test_registry_has_builtins_and_plugin_methods():
    for name in ("simclr", "supcon", "clinfonce"):
        assert name in host.METHODS, sorted(host.METHODS)
    assert host.METHODS["clinfonce"] is clinfonce_plugin.PLUGIN_METHODS["clinfonce"]
    assert issubclass(host.METHODS["clinfonce"], host.BaseMethod)


def test_registering_a_different_class_under_a_taken_name_fails():
    registry = {"clinfonce": object}
    with pytest.raises(RuntimeError, match="already registered"):
        clinfonce_plugin.register_methods(registry)


def test_n_crop_pipeline_gives_the_requested_crops():
    from omegaconf import OmegaConf
    from tests.conftest import augmentation

    aug = OmegaConf.create(augmentation(crop_size=16))
    aug.equalization = {"prob": 0.0}
    t = host.build_transform_pipeline("synthetic_cub", aug)
    pipe = host.FullTransformPipeline([host.NCropAugmentation(t, 2), host.NCropAugmentation(t, 1)])
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    crops = pipe(img)
    assert len(crops) == 3
    assert all(c.shape == (3, 16, 16) and c.dtype == torch.float32 for c in crops)


def test_builtin_simclr_forward_and_training_step_follow_the_contract(cfg_factory):
    cfg = cfg_factory("simclr", dataset="cifar10", num_classes=10)
    model = host.METHODS["simclr"](cfg)
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert {"feats", "logits", "z"} <= set(out)
    assert out["logits"].shape == (4, 10) and out["z"].shape == (4, 16)
    groups = model.learnable_params
    assert all("name" in g and "params" in g for g in groups)
    assert {"backbone", "classifier", "projector"} <= {g["name"] for g in groups}
    batch = (torch.arange(4), [x, torch.randn(4, 3, 32, 32)], torch.tensor([0, 1, -1, 2]))
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    loss = model.training_step(batch, 0)
    loss = loss["loss"] if isinstance(loss, dict) else loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # the online probe sees detached features: its loss alone does not reach the backbone
    model.zero_grad()
    model(x)["logits"].sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.backbone.parameters())


@pytest.mark.parametrize("name,dataset", [("resnet18", "cifar10"), ("resnet18", "synthetic_cub"),
                                          ("test_resnet", "cifar100")])
def test_the_same_config_builds_the_same_backbone_on_both_hosts(cfg_factory, name, dataset):
    """The resolved host's method backbone, the plugin's bare backbone (linear evaluation)
    and the runtime's build agree: parameter count, state_dict keys and output shape."""
    from clinfonce_plugin.host.backbone import make_backbone
    from clinfonce_plugin.host.runtime.backbones import make_host_backbone as runtime_backbone

    cfg = cfg_factory("simclr", dataset=dataset, backbone=name)
    method_backbone = host.METHODS["simclr"](cfg).backbone
    bare, dim = make_backbone(cfg)
    runtime, runtime_dim = runtime_backbone(cfg)
    x = torch.randn(2, 3, 32, 32)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert set(method_backbone.state_dict()) == set(bare.state_dict())
    assert count(method_backbone) == count(bare)
    with torch.no_grad():
        shapes = {m(x).shape for m in (method_backbone.eval(), bare.eval(), runtime.eval())}
    assert shapes == {(2, dim)} and dim == runtime_dim
    if host.HOST_NAME == "solo-learn" and name == "resnet18":
        # solo-learn's own resnet18 (torchvision) against the runtime's timm resnet18: the
        # same architecture, so the same number of parameters (the CIFAR stem included)
        assert count(bare) == count(runtime)


@pytest.mark.parametrize("size", [(45, 32), (20, 61)])
def test_eval_transform_resizes_and_centre_crops_non_square_images(size, tmp_path):
    """The deterministic pipeline (validation, features, k-means pass) of either host gives a
    square crop_size image: resize of the shorter side (bicubic) then centre crop, as an
    independent torchvision composition computes it."""
    from torchvision import transforms as T

    from clinfonce_plugin.config import check_pretrain_cfg
    from clinfonce_plugin.data.registry import DATASETS
    from clinfonce_plugin.data.transforms import eval_transform
    from tests.helpers import yaml_pretrain_cfg

    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", str(tmp_path),
                            str(tmp_path))
    cfg.data.dataset = "imagenet100"  # a dataset without fixed statistics of its own
    cfg = check_pretrain_cfg(cfg, DATASETS, host.METHODS)  # fills every augmentation key
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    out = eval_transform(cfg)(image)
    node = cfg.augmentations[0]
    mean = node.get("mean") or (0.485, 0.456, 0.406)
    std = node.get("std") or (0.229, 0.224, 0.225)
    reference = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC),
                           T.CenterCrop(32), T.ToTensor(), T.Normalize(mean, std)])(image)
    assert tuple(out.shape) == (3, 32, 32)
    assert torch.allclose(out, reference, atol=1e-5)
