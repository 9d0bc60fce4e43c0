"""The solo-learn adapter: every solo-learn-specific step lives here.

- ``load()`` imports solo-learn's contract names, refusing the 2021 PyPI release;
- timm backbones (the small CPU ResNets of the demo configs) are added to solo-learn's
  backbone table under their timm names;
- ``prepare_cfg`` adapts a checked config to solo-learn's ``parse_cfg`` (device list, dataset
  names it does not know, ``channels_last`` as its ``performance.disable_channel_last``);
- ``make_backbone`` builds a bare backbone exactly as solo-learn's BaseMethod does;
- the online probe's loss is zero, not NaN, on a batch without labels (unlabelled data).
"""
import functools
import importlib
import importlib.util
from typing import Tuple

import omegaconf
import timm
import torch.nn as nn
from torchvision import transforms

from .probe import probe_loss
from .runtime.backbones import apply_cifar_stem, build_backbone

SOLO_INSTALL_HINT = (
    "install solo-learn from its repository instead: "
    "`git clone https://github.com/vturrisi/solo-learn && pip install -e ./solo-learn` "
    "(or uninstall it with `pip uninstall solo-learn` to use the bundled runtime)"
)
CPU_BACKBONES = ("test_resnet", "resnet10t", "resnet18d", "resnet26", "resnet34")
CIFAR_DATASETS = ("cifar10", "cifar100")
SOLO_DATASETS = ("cifar10", "cifar100", "stl10", "imagenet", "imagenet100", "custom")


class HostError(ImportError):
    """The installed host cannot be used; the message says why and what to do."""


class TimmBackbone(nn.Module):
    """A timm model shaped like solo-learn's ResNets: ``inplanes``/``num_features`` give the
    feature size and ``fc`` is the (identity) head solo-learn replaces."""

    def __init__(self, name: str, **kwargs):
        super().__init__()
        self.model, dim = build_backbone(name, kwargs)
        self.inplanes = self.num_features = dim
        self.fc = nn.Identity()

    def forward(self, x):
        return self.fc(self.model(x))


def register_timm_backbones(backbones: dict, names) -> None:
    """Adds each timm ``name`` absent from solo-learn's ``BaseMethod._BACKBONES``."""
    for name in names:
        if name not in backbones and timm.is_model(name):
            backbones[name] = lambda method, _n=name, **kw: TimmBackbone(_n, **kw)


def zero_probe_loss_without_labels(base: type) -> None:
    """solo-learn's online probe loss is ``cross_entropy(logits, targets, ignore_index=-1)``:
    NaN for a batch with no known target (unlabelled data, e.g. a flat custom folder), which
    makes the whole training loss NaN. Wraps ``base._base_shared_step`` (once) so that the
    probe loss is the bundled runtime's ``probe_loss``: the same value for a labelled batch,
    zero (with a zero gradient) for a batch without a known target, and no read back to the
    host to tell them apart."""
    original = base._base_shared_step
    if getattr(original, "_zero_without_labels", False):
        return

    @functools.wraps(original)
    def _base_shared_step(self, X, targets):
        out = original(self, X, targets)
        out["loss"] = probe_loss(out["logits"], targets)
        return out

    _base_shared_step._zero_without_labels = True
    base._base_shared_step = _base_shared_step


def _solo_version() -> str:
    try:
        from importlib.metadata import version

        return version("solo-learn")
    except Exception:  # noqa: BLE001 - an uninstalled checkout on sys.path has no metadata
        return "unknown"


def load() -> dict:
    """solo-learn's contract names (see host/__init__.py), plus this adapter's functions."""
    if importlib.util.find_spec("solo.args.pretrain") is None:
        raise HostError(
            f"solo-learn {_solo_version()} is installed but it is the old PyPI release without "
            f"the hydra API (solo.args.pretrain.parse_cfg); clinfonce-plugin needs solo-learn "
            f">= 1.0.6 from the main branch: {SOLO_INSTALL_HINT}"
        )
    pretrain = importlib.import_module("solo.args.pretrain")
    if not hasattr(pretrain, "parse_cfg"):
        raise HostError(
            f"solo-learn {_solo_version()} has no solo.args.pretrain.parse_cfg (pre-1.0.6); "
            f"{SOLO_INSTALL_HINT}"
        )
    from solo.data.pretrain_dataloader import (
        FullTransformPipeline,
        NCropAugmentation,
        build_transform_pipeline,
    )
    from solo.methods import METHODS
    from solo.methods.base import BaseMethod

    register_timm_backbones(BaseMethod._BACKBONES, CPU_BACKBONES)
    zero_probe_loss_without_labels(BaseMethod)

    def prepare_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """solo-learn's parse_cfg on a checked config: it counts devices with len(devices)
        and only knows its own dataset names ("custom" keeps its checks meaningful); its
        BaseMethod reads the input memory format from performance.disable_channel_last."""
        if isinstance(cfg.devices, int):
            cfg.devices = list(range(cfg.devices))
        dataset, num_classes = cfg.data.dataset, cfg.data.num_classes
        # the plugin's channels_last (default off) is solo-learn's inverted key (default on)
        cfg.performance = {"disable_channel_last": not cfg.channels_last}
        if dataset not in SOLO_DATASETS:
            cfg.data.dataset = "custom"
        cfg = pretrain.parse_cfg(cfg)
        cfg.data.dataset, cfg.data.num_classes = dataset, num_classes
        return cfg

    def make_backbone(cfg: omegaconf.DictConfig) -> Tuple[nn.Module, int]:
        name = cfg.backbone.name
        if name not in BaseMethod._BACKBONES:
            raise ValueError(f"unknown backbone {name!r}. Choose from "
                             f"{sorted(BaseMethod._BACKBONES)}")
        model = BaseMethod._BACKBONES[name](cfg.method, **dict(cfg.backbone.get("kwargs") or {}))
        # what solo-learn's BaseMethod.__init__ does to its backbone, step for step
        if name.startswith("resnet"):
            dim = model.inplanes
            model.fc = nn.Identity()
            if cfg.data.dataset in CIFAR_DATASETS:
                model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
                model.maxpool = nn.Identity()
        else:
            dim = model.num_features
        return model, dim

    def centre_cropped(build):
        """solo-learn's pipeline with rrc disabled only resizes the shorter side, so a
        non-square image stays non-square and cannot be batched; the runtime resizes and
        centre-crops. Resize + centre-crop first: solo-learn's own resize of the square
        crop_size image is then a no-op (PIL returns same-size resizes unchanged), so the
        deterministic pipeline equals the runtime's on both hosts."""
        def build_pipeline(dataset, cfg):
            pipeline = build(dataset, cfg)
            if cfg.rrc.enabled:
                return pipeline
            size = cfg.crop_size
            return transforms.Compose([
                transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(size), pipeline])
        return build_pipeline

    return {
        "HOST_NAME": "solo-learn",
        "BaseMethod": BaseMethod,
        "METHODS": METHODS,
        "parse_cfg": pretrain.parse_cfg,
        "prepare_host_cfg": prepare_cfg,
        "make_host_backbone": make_backbone,
        "build_transform_pipeline": centre_cropped(build_transform_pipeline),
        "NCropAugmentation": NCropAugmentation,
        "FullTransformPipeline": FullTransformPipeline,
    }
