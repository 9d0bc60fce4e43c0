"""The runtime's built-in methods: SimCLR and SupCon (same names and kwargs as solo-learn)."""
from typing import Any, Dict, List, Sequence

import omegaconf
import torch
import torch.nn as nn

from clinfonce_plugin.cfgcheck import REQUIRED, fill_defaults

from .base import BaseMethod
from .losses import nt_xent_masked

PROJECTOR_KWARGS = {"proj_hidden_dim": REQUIRED, "proj_output_dim": REQUIRED,
                    "temperature": REQUIRED}


class SimCLR(BaseMethod):
    """Implements SimCLR (https://arxiv.org/abs/2002.05709).

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int): hidden units of the projector.
            proj_output_dim (int): output dimension of the projector.
            temperature (float): softmax temperature.
    """

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        kw = cfg.method_kwargs
        self.temperature: float = kw.temperature
        self.projector = nn.Sequential(
            nn.Linear(self.features_dim, kw.proj_hidden_dim),
            nn.ReLU(),
            nn.Linear(kw.proj_hidden_dim, kw.proj_output_dim),
        )

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = BaseMethod.add_and_assert_specific_cfg(cfg)
        fill_defaults(cfg, "method_kwargs", PROJECTOR_KWARGS)
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return super().learnable_params + [{"name": "projector",
                                            "params": self.projector.parameters()}]

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().forward(X)
        out.update({"z": self.projector(out["feats"])})
        return out

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().multicrop_forward(X)
        out.update({"z": self.projector(out["feats"])})
        return out

    def contrastive_ids(self, indexes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return indexes

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        indexes, _, targets = batch
        out = super().training_step(batch, batch_idx)
        z = torch.cat(out["z"])
        ids = self.contrastive_ids(indexes, targets).repeat(self.num_crops)
        nce_loss = nt_xent_masked(z, ids, self.temperature)
        self.log("train_nce_loss", nce_loss, on_epoch=True, sync_dist=True)
        return nce_loss + out["loss"]


class SupCon(SimCLR):
    """Implements SupCon (https://arxiv.org/abs/2004.11362): SimCLR's loss with label positives.

    Extra cfg settings: as SimCLR. Samples with an unknown label (-1) fall back to their own
    instance as the only positive, never to each other.
    """

    def contrastive_ids(self, indexes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # unknown labels become unique negative ids so they never group together
        return torch.where(targets >= 0, targets, -1 - indexes)


METHODS = {"simclr": SimCLR, "supcon": SupCon}
