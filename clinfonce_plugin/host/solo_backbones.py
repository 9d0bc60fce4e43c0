"""Makes timm backbones usable by name in solo-learn's BaseMethod (the small CPU-sized
ResNets of the synthetic configs, e.g. ``resnet10t`` or ``test_resnet``)."""
import timm
import torch.nn as nn

from .runtime.backbones import build_backbone


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


CPU_BACKBONES = ("test_resnet", "resnet10t", "resnet18d", "resnet26", "resnet34")
