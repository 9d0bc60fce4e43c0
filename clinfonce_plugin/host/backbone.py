"""Building a bare backbone the way the resolved host's BaseMethod builds it (for linear
evaluation and feature extraction), plus the plugin's ``backbone.cifar_stem`` switch."""
import omegaconf
import torch.nn as nn

from . import HOST_NAME, BaseMethod
from .runtime.backbones import apply_cifar_stem, build_backbone

CIFAR_DATASETS = ("cifar10", "cifar100")


def make_backbone(cfg: omegaconf.DictConfig) -> tuple[nn.Module, int]:
    """The backbone of a method built from ``cfg`` (same modules, same state_dict keys as
    ``method.backbone``), and its feature dimension."""
    name = cfg.backbone.name
    kwargs = dict(cfg.backbone.get("kwargs") or {})
    if HOST_NAME == "solo-learn" and name in BaseMethod._BACKBONES:
        model = BaseMethod._BACKBONES[name](cfg.method, **kwargs)
        if name.startswith("resnet"):
            dim = model.inplanes
            model.fc = nn.Identity()
            if cfg.data.dataset in CIFAR_DATASETS:
                model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
                model.maxpool = nn.Identity()
        else:
            dim = model.num_features
    else:
        model, dim = build_backbone(name, kwargs)
        if cfg.data.dataset in CIFAR_DATASETS and name.startswith("resnet"):
            apply_cifar_stem(model)
    if cfg.backbone.get("cifar_stem") and cfg.data.dataset not in CIFAR_DATASETS:
        apply_cifar_stem(getattr(model, "model", model))
    return model, dim


def apply_plugin_stem(method: nn.Module, cfg: omegaconf.DictConfig) -> None:
    """``backbone.cifar_stem: true`` on a non-CIFAR dataset (e.g. 32x32 synthetic CUB):
    the host only switches the stem for its CIFAR datasets, so the plugin does it here."""
    if cfg.backbone.get("cifar_stem") and cfg.data.dataset not in CIFAR_DATASETS:
        # solo-learn wraps timm models (host/solo_backbones.py): switch the inner model's stem
        apply_cifar_stem(getattr(method.backbone, "model", method.backbone))
