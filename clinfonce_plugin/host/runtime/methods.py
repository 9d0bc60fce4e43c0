"""The runtime's built-in methods: SimCLR, SupCon, SwAV and MoCo v2+ (same names and kwargs as
solo-learn)."""
import copy
from typing import Any, Dict, List, Sequence

import omegaconf
import torch
import torch.nn as nn

from clinfonce_plugin.config import REQUIRED, ConfigError, fill_defaults

from clinfonce_plugin.utils.distributed import all_gather_no_grad, is_dist

from .base import BaseMethod, BaseMomentumMethod
from .losses import moco_infonce, nt_xent_masked
from .momentum import enqueue_, init_momentum_

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


# solo-learn's defaults (its mocov2plus.py); its yamls set proj_hidden_dim 2048,
# proj_output_dim 256, temperature 0.2, queue_size 32768 (CIFAR) or 65536 (ImageNet)
MOCOV2PLUS_KWARGS = {"proj_hidden_dim": REQUIRED, "proj_output_dim": REQUIRED,
                     "temperature": REQUIRED, "queue_size": 65536}


class MoCoV2Plus(BaseMomentumMethod):
    """Implements MoCo v2+ (https://arxiv.org/abs/2011.10566), as solo-learn's ``mocov2plus``:
    MoCo v2 with a symmetric loss.

    Query q = normalise(projector(backbone(x))); key k the same through the momentum backbone
    and momentum projector (EMA copies, ``momentum.base_tau`` -> ``momentum.final_tau``). The
    loss is ``(L(q1, k2, queue of view 2) + L(q2, k1, queue of view 1)) / 2`` with L MoCo's
    InfoNCE (``losses.moco_infonce``); after it, every rank's keys (gathered) enter the two
    FIFO queues, so the queues stay equal on every rank (rank 0's are broadcast when training
    starts, and DDP does not broadcast them every step). The queues (``queue``: 2 x D x K,
    starting as random unit vectors) and their write position (``queue_ptr``) are buffers,
    saved with the checkpoint. Two large crops, no small crops.

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int): hidden units of the projector.
            proj_output_dim (int): output dimension of the projector (D).
            temperature (float): softmax temperature.
            queue_size (int): keys per queue (K), at least the global batch.
        momentum: base_tau, final_tau (see BaseMomentumMethod).
    """

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        kw = cfg.method_kwargs
        self.temperature: float = kw.temperature
        self.queue_size: int = kw.queue_size
        self.projector = nn.Sequential(
            nn.Linear(self.features_dim, kw.proj_hidden_dim),
            nn.ReLU(),
            nn.Linear(kw.proj_hidden_dim, kw.proj_output_dim),
        )
        self.momentum_projector = copy.deepcopy(self.projector)
        init_momentum_(self.projector, self.momentum_projector)
        queue = torch.randn(2, kw.proj_output_dim, kw.queue_size)
        self.register_buffer("queue", nn.functional.normalize(queue, dim=1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        # equal on every rank (rank 0's at the start, then the same gathered keys): DDP need
        # not broadcast 2 x D x K floats every step
        self._ddp_params_and_buffers_to_ignore = ["queue", "queue_ptr"]

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = BaseMomentumMethod.add_and_assert_specific_cfg(cfg)
        kw = fill_defaults(cfg, "method_kwargs", MOCOV2PLUS_KWARGS)
        if kw.temperature <= 0 or kw.queue_size < 1:
            raise ConfigError(f"mocov2plus: temperature and queue_size must be positive, got "
                             f"{kw.temperature}, {kw.queue_size}")
        if (cfg.data.num_large_crops, cfg.data.num_small_crops) != (2, 0):
            raise ConfigError(f"mocov2plus takes two large crops and no small crops, got "
                             f"{cfg.data.num_large_crops} and {cfg.data.num_small_crops}")
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return super().learnable_params + [{"name": "projector",
                                            "params": self.projector.parameters()}]

    @property
    def momentum_pairs(self):
        return super().momentum_pairs + [(self.projector, self.momentum_projector)]

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().forward(X)
        out.update({"z": nn.functional.normalize(self.projector(out["feats"]), dim=-1)})
        return out

    @torch.no_grad()
    def momentum_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().momentum_forward(X)
        out.update({"z": nn.functional.normalize(self.momentum_projector(out["feats"]), dim=-1)})
        return out

    def on_train_start(self):
        super().on_train_start()
        if is_dist():  # the random initial queue (or a restored one) of rank 0 everywhere
            torch.distributed.broadcast(self.queue, 0)
            torch.distributed.broadcast(self.queue_ptr, 0)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        out = super().training_step(batch, batch_idx)
        q1, q2 = out["z"]
        k1, k2 = out["momentum_z"]
        # a copy: the enqueue below writes in place into the tensor the loss saved for backward
        queue = self.queue.clone()
        nce_loss = (moco_infonce(q1, k2, queue[1], self.temperature)
                    + moco_infonce(q2, k1, queue[0], self.temperature)) / 2
        enqueue_(self.queue, self.queue_ptr,
                 torch.stack([all_gather_no_grad(k1), all_gather_no_grad(k2)]))
        self.log("train_nce_loss", nce_loss, on_epoch=True, sync_dist=True)
        return nce_loss + out["loss"]


METHODS = {"simclr": SimCLR, "supcon": SupCon, "swav": SwAV, "mocov2plus": MoCoV2Plus}
