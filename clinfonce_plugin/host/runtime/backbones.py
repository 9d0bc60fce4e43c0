"""Backbones of the bundled runtime: timm models without their classification head."""
from typing import Any, Dict, Tuple

import timm
import torch.nn as nn


def build_backbone(name: str, kwargs: Dict[str, Any] | None = None) -> Tuple[nn.Module, int]:
    """Creates ``timm.create_model(name, num_classes=0, **kwargs)``.

    Returns the module (forward gives pooled features ``(B, F)``) and ``F``.
    An unknown name fails with the list of close timm names.
    """
    kwargs = dict(kwargs or {})
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:15]
        raise ValueError(
            f"unknown backbone {name!r}: timm has no such model. Close names: {close}"
        )
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    return model, int(model.num_features)


def apply_cifar_stem(model: nn.Module) -> nn.Module:
    """Turns a ResNet stem into the 32x32 "cifar stem": 3x3 stride-1 first conv, no max-pool.

    Works on timm and torchvision ResNets (attributes ``conv1`` and ``maxpool``). A plain
    ``conv1`` is replaced by a fresh 3x3/1 conv with padding 2 and the same output channels,
    exactly solo-learn's CIFAR stem (so both hosts build the same network); a deep stem (``conv1`` a Sequential, e.g. resnet10t) keeps its
    convs and only loses the stride of the first one.
    """
    if not hasattr(model, "conv1") or not hasattr(model, "maxpool"):
        raise ValueError(
            f"cifar stem needs a ResNet with 'conv1' and 'maxpool'; got {type(model).__name__}"
        )
    conv1 = model.conv1
    if isinstance(conv1, nn.Conv2d):
        model.conv1 = nn.Conv2d(
            conv1.in_channels, conv1.out_channels, kernel_size=3, stride=1, padding=2, bias=False
        )
    else:
        first = next(m for m in conv1.modules() if isinstance(m, nn.Conv2d))
        first.stride = (1, 1)
    model.maxpool = nn.Identity()
    return model


CIFAR_DATASETS = ("cifar10", "cifar100")


def make_host_backbone(cfg) -> Tuple[nn.Module, int]:
    """A bare backbone exactly as the runtime's BaseMethod builds it (CIFAR stem on the
    CIFAR datasets, solo-learn's rule)."""
    model, dim = build_backbone(cfg.backbone.name, dict(cfg.backbone.get("kwargs") or {}))
    if cfg.data.dataset in CIFAR_DATASETS and cfg.backbone.name.startswith("resnet"):
        apply_cifar_stem(model)
    return model, dim
