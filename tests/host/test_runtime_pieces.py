"""The bundled runtime's own pieces: cifar stem, optimiser groups, warmup-cosine schedule,
parse_cfg's derived values. (They exist whichever host is resolved.)"""
import math

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from clinfonce_plugin.host.runtime.args import parse_cfg
from clinfonce_plugin.host.runtime.backbones import apply_cifar_stem, build_backbone
from clinfonce_plugin.host.runtime.optim import (
    build_optimizer,
    exclude_bias_and_norm_from_wd,
    warmup_cosine_factor,
)
from tests.conftest import augmentation


@pytest.mark.parametrize("name", ["resnet18", "resnet10t"])
def test_cifar_stem_does_not_downsample_in_the_stem(name):
    model, dim = build_backbone(name)
    assert dim == 512
    apply_cifar_stem(model)
    assert isinstance(model.maxpool, nn.Identity)
    first = next(m for m in model.conv1.modules() if isinstance(m, nn.Conv2d)) \
        if not isinstance(model.conv1, nn.Conv2d) else model.conv1
    assert first.stride == (1, 1)
    seen = {}
    model.layer1.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    if name == "resnet18":
        # solo-learn's CIFAR stem, built by hand: 3x3, stride 1, padding 2, no bias, no
        # max-pool, so a 32x32 input reaches layer1 as 34x34 maps
        reference = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
        assert (first.kernel_size, first.stride, first.padding, first.bias) == \
            (reference.kernel_size, reference.stride, reference.padding, reference.bias)
        x = torch.randn(1, 3, 32, 32)
        first.weight.data.copy_(reference.weight.data)
        torch.testing.assert_close(first(x), reference(x))
        assert seen["shape"][-2:] == (34, 34)
    else:
        # a deep stem keeps its convs (padding 1) and only loses the first stride
        assert seen["shape"][-2:] == (32, 32)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backbone 'resnet_nope'"):
        build_backbone("resnet_nope")


def test_bias_and_norm_parameters_get_no_weight_decay():
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    groups = exclude_bias_and_norm_from_wd([{"name": "net", "params": net.parameters()}])
    decayed = [g for g in groups if "weight_decay" not in g]
    no_wd = [g for g in groups if g.get("weight_decay") == 0.0]
    assert sum(p.numel() for g in decayed for p in g["params"]) == 4 * 3 + 3 * 2
    assert sum(p.numel() for g in no_wd for p in g["params"]) == 3 + 3 + 3 + 2
    opt = build_optimizer("sgd", groups, lr=0.1, weight_decay=1e-4, kwargs={"momentum": 0.9})
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 1e-4]


def test_lars_maps_solo_keys_to_timm():
    p = [nn.Parameter(torch.ones(3, 3))]
    opt = build_optimizer("lars", [{"params": p}], lr=0.1, weight_decay=0.0,
                          kwargs={"momentum": 0.9, "eta": 0.02, "clip_lr": True,
                                  "exclude_bias_n_norm": True})
    assert opt.param_groups[0]["trust_coeff"] == 0.02 and opt.param_groups[0]["trust_clip"]
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        build_optimizer("rmsprop", [{"params": p}], 0.1, 0.0, {})


def test_warmup_cosine_factor_hand_values():
    # 10 warmup steps from 0.1 to 1, then cosine to 0 at step 110
    f = lambda s: warmup_cosine_factor(s, 10, 110, 0.1, 0.0)  # noqa: E731
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)  # half way through the cosine
    assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(110) == pytest.approx(0.0) and f(500) == pytest.approx(0.0)
    assert warmup_cosine_factor(110, 10, 110, 0.1, 0.2) == pytest.approx(0.2)


def _pretrain_cfg(**over):
    """A pretrain config through the plugin's config check (what parse_cfg receives)."""
    from clinfonce_plugin import host
    from clinfonce_plugin.config import check_pretrain_cfg

    cfg = OmegaConf.create({
        "method": "simclr", "backbone": {"name": "test_resnet"},
        "data": {"dataset": "cifar10", "train_path": "x"},
        "optimizer": {"name": "lars", "batch_size": 128, "lr": 1.0, "classifier_lr": 0.1},
        "augmentations": [augmentation(32, 2), augmentation(16, 4)],
        "devices": [0, 1],
    })
    return check_pretrain_cfg(OmegaConf.merge(cfg, over), {"cifar10"}, host.METHODS)


def test_parse_cfg_counts_crops_and_scales_lr_like_solo():
    cfg = parse_cfg(_pretrain_cfg())
    assert cfg.data.num_large_crops == 2 and cfg.data.num_small_crops == 4
    assert cfg.data.num_classes == 10
    assert cfg.optimizer.lr == pytest.approx(1.0 * 128 * 2 / 256)
    assert cfg.optimizer.classifier_lr == pytest.approx(0.1)  # only scaled when validating
    assert cfg.optimizer.kwargs.eta == 1e-3 and cfg.optimizer.kwargs.momentum == 0.9
    cfg = parse_cfg(_pretrain_cfg(devices=1, data={"val_path": "v"}))
    assert cfg.optimizer.classifier_lr == pytest.approx(0.1 * 128 / 256)


def test_the_config_check_rejects_missing_required_keys_before_parse_cfg():
    from clinfonce_plugin.config import ConfigError

    with pytest.raises(ConfigError, match="optimizer.lr: required key is missing"):
        _pretrain_cfg(optimizer={"lr": None})
