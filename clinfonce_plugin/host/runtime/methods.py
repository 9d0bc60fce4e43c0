"""The runtime's built-in methods: SimCLR and SupCon (same names and kwargs as solo-learn)."""
from typing import Any, Dict, List, Sequence

import omegaconf
import torch
import torch.nn as nn

from clinfonce_plugin.config import REQUIRED, fill_defaults

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



SWAV_KWARGS = {"proj_hidden_dim": 2048, "proj_output_dim": 128, "num_prototypes": 3000,
               "temperature": 0.1, "sk_epsilon": 0.05, "sk_iters": 3, "queue_size": 0,
               "epoch_queue_starts": 15, "freeze_prototypes_epochs": 1}


class SwAV(BaseMethod):
    """Implements SwAV (https://arxiv.org/abs/2006.09882).

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int), proj_output_dim (int): projector MLP (with BN).
            num_prototypes (int): K prototypes (normalised to unit norm every step).
            temperature (float): softmax temperature of the predictions.
            sk_epsilon (float), sk_iters (int): Sinkhorn-Knopp entropy weight and iterations.
            queue_size (int): per-rank queue of past projections used when computing codes
                (0 disables it); used from epoch ``epoch_queue_starts`` on.
            freeze_prototypes_epochs (int): prototypes get no gradient during these epochs.
    """

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        kw = cfg.method_kwargs
        self.temperature, self.sk_epsilon, self.sk_iters = kw.temperature, kw.sk_epsilon, kw.sk_iters
        self.queue_size, self.epoch_queue_starts = kw.queue_size, kw.epoch_queue_starts
        self.freeze_prototypes_epochs = kw.freeze_prototypes_epochs
        self.projector = nn.Sequential(
            nn.Linear(self.features_dim, kw.proj_hidden_dim), nn.BatchNorm1d(kw.proj_hidden_dim),
            nn.ReLU(), nn.Linear(kw.proj_hidden_dim, kw.proj_output_dim))
        self.prototypes = nn.Linear(kw.proj_output_dim, kw.num_prototypes, bias=False)
        # queue of past projections per large crop (filled from the newest end)
        self.register_buffer("queue", torch.zeros(self.num_large_crops, max(kw.queue_size, 0),
                                                  kw.proj_output_dim))

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = BaseMethod.add_and_assert_specific_cfg(cfg)
        kw = fill_defaults(cfg, "method_kwargs", SWAV_KWARGS)
        if kw.temperature <= 0 or kw.sk_epsilon <= 0 or kw.num_prototypes < 1:
            raise ValueError(f"swav: temperature, sk_epsilon and num_prototypes must be positive,"
                             f" got {kw.temperature}, {kw.sk_epsilon}, {kw.num_prototypes}")
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return super().learnable_params + [
            {"name": "projector", "params": self.projector.parameters()},
            {"name": "prototypes", "params": self.prototypes.parameters()}]

    def _project(self, out: Dict[str, Any]) -> Dict[str, Any]:
        z = nn.functional.normalize(self.projector(out["feats"]), dim=-1)
        out.update({"z": z, "p": self.prototypes(z)})
        return out

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().forward(X))

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return self._project(super().multicrop_forward(X))

    def on_train_batch_start(self, batch, batch_idx):
        with torch.no_grad():  # prototypes live on the unit sphere
            w = self.prototypes.weight
            w.copy_(nn.functional.normalize(w, dim=1))

    @torch.no_grad()
    def _codes(self, z: List[torch.Tensor], p: List[torch.Tensor]) -> List[torch.Tensor]:
        from .swav import sinkhorn_knopp

        codes = []
        use_queue = self.queue_size > 0 and self.current_epoch >= self.epoch_queue_starts
        for i in range(self.num_large_crops):
            scores = p[i].detach()
            if use_queue and bool(self.queue[i].abs().sum() > 0):
                scores = torch.cat([scores, self.prototypes(self.queue[i])])
            codes.append(sinkhorn_knopp(scores, self.sk_epsilon, self.sk_iters)[: p[i].size(0)])
            if self.queue_size > 0:
                b = z[i].size(0)
                if self.queue_size < b:
                    raise ValueError(f"swav: queue_size {self.queue_size} is smaller than the "
                                     f"batch {b}")
                self.queue[i, b:] = self.queue[i, :-b].clone()
                self.queue[i, :b] = z[i].detach()
        return codes

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        from .swav import swav_loss

        out = super().training_step(batch, batch_idx)
        codes = self._codes(out["z"], out["p"])
        loss = swav_loss(out["p"], codes, self.temperature)
        self.log("train_swav_loss", loss, on_epoch=True, sync_dist=True)
        return loss + out["loss"]

    def on_after_backward(self):
        if self.current_epoch < self.freeze_prototypes_epochs:
            for p in self.prototypes.parameters():
                p.grad = None


METHODS = {"simclr": SimCLR, "supcon": SupCon, "swav": SwAV}
