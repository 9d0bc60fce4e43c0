"""A bare backbone the way the resolved host's BaseMethod builds it (linear evaluation,
feature extraction), plus the plugin's ``backbone.cifar_stem`` switch and the re-copy of a
momentum method's momentum modules after the plugin changed their online modules."""
import omegaconf
import torch.nn as nn

from . import make_host_backbone
from .runtime.backbones import CIFAR_DATASETS, apply_cifar_stem
from .runtime.momentum import init_momentum_


def _plugin_stem_wanted(cfg: omegaconf.DictConfig) -> bool:
    return bool(cfg.backbone.get("cifar_stem")) and cfg.data.dataset not in CIFAR_DATASETS


def make_backbone(cfg: omegaconf.DictConfig) -> tuple[nn.Module, int]:
    """The backbone of a method built from ``cfg`` (same modules, same state_dict keys as
    ``method.backbone``), and its feature dimension."""
    model, dim = make_host_backbone(cfg)
    if _plugin_stem_wanted(cfg):
        apply_cifar_stem(getattr(model, "model", model))
    return model, dim


def apply_plugin_stem(method: nn.Module, cfg: omegaconf.DictConfig) -> None:
    """``backbone.cifar_stem: true`` on a non-CIFAR dataset (e.g. 32x32 synthetic CUB):
    the host only switches the stem for its CIFAR datasets, so the plugin does it here (to
    the momentum backbone too, which then restarts as a copy of the online one)."""
    if _plugin_stem_wanted(cfg):
        for name in ("backbone", "momentum_backbone"):
            module = getattr(method, name, None)
            if module is not None:
                # solo-learn wraps timm models (host/solo.py): switch the inner model's stem
                apply_cifar_stem(getattr(module, "model", module))
        sync_momentum_modules(method)


def sync_momentum_modules(method: nn.Module) -> None:
    """Makes every momentum module of ``method`` (its ``momentum_pairs``: solo-learn's and the
    runtime's momentum methods) a copy of its online module, parameters and buffers, without
    gradient, as both hosts do at construction: needed again after the plugin changed an
    online module (stem switch, ``backbone.pretrained`` weights). Other methods: nothing."""
    for online, momentum in getattr(method, "momentum_pairs", ()):
        init_momentum_(online, momentum)
