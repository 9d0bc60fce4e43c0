"""BaseMethod of the bundled runtime: the solo-learn BaseMethod contract on Lightning + timm.

Same constructor (``cfg``), attributes, ``learnable_params``, ``forward`` /
``multicrop_forward`` dicts and ``training_step`` outputs as ``solo.methods.base.BaseMethod``,
so plugin methods are written once for both hosts.
"""
import copy
from typing import Any, Dict, List, Optional, Tuple

import lightning.pytorch as pl
import omegaconf
import torch
import torch.nn as nn

from .backbones import make_host_backbone
from ..probe import accuracy_at_k, probe_loss
from .knn import online_knn_accuracy
from .momentum import cosine_tau, ema_update_, init_momentum_
from clinfonce_plugin.config import ConfigError
from .optim import (
    SCHEDULERS,
    build_optimizer,
    build_warmup_cosine,
    exclude_bias_and_norm_from_wd,
)


class BaseMethod(pl.LightningModule):
    """Backbone + online linear probe + optimiser/schedule (solo-learn's BaseMethod contract).

    Cfg (same schema as solo-learn)::

        backbone: {name, kwargs}
        data: {dataset, num_classes, num_large_crops, num_small_crops}
        optimizer: {name, batch_size, lr, classifier_lr, weight_decay, kwargs,
                    exclude_bias_n_norm_wd}
        scheduler: {name, warmup_epochs, warmup_start_lr, min_lr, interval, lr_decay_steps}
        knn_eval: {enabled, k, distance_func}
        max_epochs, accumulate_grad_batches, method_kwargs

    With ``knn_eval.enabled`` every validation epoch also logs ``val_knn_acc1`` and
    ``val_knn_acc5`` (percent, as solo-learn): the online kNN of ``host/runtime/knn.py``
    over ``knn_splits``, which the runner sets to ``{"train": (images, labels), "val":
    (images, labels)}`` (datasets of (image tensor, target) under the eval transform).
    """

    _OPTIMIZERS = ("sgd", "lars", "adam", "adamw")
    _SCHEDULERS = tuple(SCHEDULERS)

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__()
        cfg = self.add_and_assert_specific_cfg(cfg)
        self.cfg = cfg

        self.backbone_name: str = cfg.backbone.name
        self.backbone_args: Dict[str, Any] = dict(cfg.backbone.kwargs)
        self.backbone, self.features_dim = make_host_backbone(cfg)

        self.num_classes: int = cfg.data.num_classes
        self.classifier = nn.Linear(self.features_dim, self.num_classes)

        self.max_epochs: int = cfg.max_epochs
        self.accumulate_grad_batches = cfg.accumulate_grad_batches

        self.optimizer: str = cfg.optimizer.name
        self.batch_size: int = cfg.optimizer.batch_size
        self.lr: float = cfg.optimizer.lr
        self.weight_decay: float = cfg.optimizer.weight_decay
        self.classifier_lr: float = cfg.optimizer.classifier_lr
        self.extra_optimizer_args: Dict[str, Any] = dict(cfg.optimizer.kwargs)
        self.exclude_bias_n_norm_wd: bool = cfg.optimizer.exclude_bias_n_norm_wd

        self.scheduler: str = cfg.scheduler.name
        self.min_lr: float = cfg.scheduler.min_lr
        self.warmup_start_lr: float = cfg.scheduler.warmup_start_lr
        self.warmup_epochs: float = cfg.scheduler.warmup_epochs
        self.scheduler_interval: str = cfg.scheduler.interval
        self.lr_decay_steps = cfg.scheduler.lr_decay_steps

        self.num_large_crops: int = cfg.data.num_large_crops
        self.num_small_crops: int = cfg.data.num_small_crops
        self.num_crops: int = self.num_large_crops + self.num_small_crops
        self.multicrop: bool = self.num_small_crops != 0
        # inputs in the memory format of the weights (the runner converts the model), as
        # solo-learn's BaseMethod does unless performance.disable_channel_last
        self.channels_last: bool = bool(cfg.channels_last)
        self.validation_step_outputs: List[Dict[str, Any]] = []

        self.knn_eval: bool = cfg.knn_eval.enabled
        self.knn_k: int = cfg.knn_eval.k
        self.knn_distance: str = cfg.knn_eval.distance_func
        if self.knn_eval:
            self.knn_splits: Optional[Dict[str, Any]] = None  # set by the runner

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        # the keys solo-learn's BaseMethod fills here are already filled by the config check
        # (clinfonce_plugin.config: every default in its schema)
        if cfg.optimizer.name not in BaseMethod._OPTIMIZERS:
            raise ValueError(f"unknown optimizer {cfg.optimizer.name!r}. "
                             f"Choose from {list(BaseMethod._OPTIMIZERS)}")
        if cfg.scheduler.name not in BaseMethod._SCHEDULERS:
            raise ValueError(f"unknown scheduler {cfg.scheduler.name!r}. "
                             f"Choose from {list(BaseMethod._SCHEDULERS)}")
        if cfg.scheduler.interval not in ("step", "epoch"):
            raise ValueError(f"scheduler.interval must be 'step' or 'epoch', "
                             f"got {cfg.scheduler.interval!r}")
        return cfg

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return [
            {"name": "backbone", "params": self.backbone.parameters()},
            {"name": "classifier", "params": self.classifier.parameters(),
             "lr": self.classifier_lr, "weight_decay": 0},
        ]

    def configure_optimizers(self):
        groups = self.learnable_params
        if self.exclude_bias_n_norm_wd:
            groups = exclude_bias_and_norm_from_wd(groups)
        for g in groups:
            g.pop("static_lr", None)
        optimizer = build_optimizer(self.optimizer, groups, self.lr, self.weight_decay,
                                    self.extra_optimizer_args)
        if self.scheduler == "none":
            return optimizer
        if self.scheduler == "step":
            sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.lr_decay_steps))
            return [optimizer], [{"scheduler": sched, "interval": "epoch"}]
        per_step = self.scheduler_interval == "step"
        total = self.trainer.estimated_stepping_batches if per_step else self.max_epochs
        warmup = (self.warmup_epochs * total / self.max_epochs) if per_step else self.warmup_epochs
        sched = build_warmup_cosine(
            optimizer, int(round(warmup)), int(total), self.lr,
            self.warmup_start_lr if self.warmup_epochs > 0 else self.lr, self.min_lr)
        return [optimizer], [{"scheduler": sched, "interval": self.scheduler_interval,
                              "frequency": 1}]

    def _memory_format(self, X: torch.Tensor) -> torch.Tensor:
        return X.contiguous(memory_format=torch.channels_last) if self.channels_last else X

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        feats = self.backbone(self._memory_format(X))
        logits = self.classifier(feats.detach())  # the probe never trains the backbone
        return {"logits": logits, "feats": feats}

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return {"feats": self.backbone(self._memory_format(X))}

    def _base_shared_step(self, X: torch.Tensor, targets: torch.Tensor) -> Dict[str, Any]:
        out = self(X)
        logits = out["logits"]
        loss = probe_loss(logits, targets)
        acc1, acc5 = accuracy_at_k(logits, targets, top_k=(1, min(5, logits.size(1))))
        out.update({"loss": loss, "acc1": acc1, "acc5": acc5})
        return out

    def base_training_step(self, X: torch.Tensor, targets: torch.Tensor) -> Dict[str, Any]:
        return self._base_shared_step(X, targets)

    def training_step(self, batch: List[Any], batch_idx: int) -> Dict[str, Any]:
        """batch = (indexes, [crop_1 .. crop_n], targets); returns the probe loss and per-crop
        outputs as lists (``feats``, ``logits`` and whatever subclasses add)."""
        _, X, targets = batch
        X = [X] if isinstance(X, torch.Tensor) else X
        if len(X) != self.num_crops:
            raise ValueError(f"expected {self.num_crops} crops per sample, got {len(X)}")
        outs = [self.base_training_step(x, targets) for x in X[: self.num_large_crops]]
        outs = {k: [o[k] for o in outs] for k in outs[0]}
        if self.multicrop:
            mc = [self.multicrop_forward(x) for x in X[self.num_large_crops:]]
            for k in mc[0]:
                outs[k] = outs.get(k, []) + [o[k] for o in mc]
        outs["loss"] = sum(outs["loss"]) / self.num_large_crops
        outs["acc1"] = sum(outs["acc1"]) / self.num_large_crops
        outs["acc5"] = sum(outs["acc5"]) / self.num_large_crops
        self.log_dict({"train_class_loss": outs["loss"], "train_acc1": outs["acc1"],
                       "train_acc5": outs["acc5"]}, on_epoch=True, sync_dist=True)
        return outs

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = None):
        X, targets = batch[-2], batch[-1]
        out = self._base_shared_step(X, targets)
        metrics = {"batch_size": targets.size(0), "val_loss": out["loss"],
                   "val_acc1": out["acc1"], "val_acc5": out["acc5"]}
        self.validation_step_outputs.append(metrics)
        return metrics

    def on_validation_epoch_end(self):
        outs = self.validation_step_outputs
        if outs:
            n = sum(o["batch_size"] for o in outs)
            log = {k: sum(o[k] * o["batch_size"] for o in outs) / n
                   for k in ("val_loss", "val_acc1", "val_acc5")}
            self.log_dict(log, sync_dist=True)
            self.validation_step_outputs.clear()
        if self.knn_eval and not self.trainer.sanity_checking:
            # the same value on every rank (gathered features): averaging changes nothing
            self.log_dict(self.online_knn(), sync_dist=True)

    def online_knn(self) -> Dict[str, float]:
        """``val_knn_acc1`` / ``val_knn_acc5`` (percent) of the current backbone; called in
        the validation loop, so the model is in eval mode."""
        if self.knn_splits is None:
            raise RuntimeError("knn_eval.enabled but knn_splits is not set: the runner gives "
                               "the method its train and validation images and labels")
        acc1, acc5 = online_knn_accuracy(
            self.backbone, self.features_dim, self.knn_splits["train"], self.knn_splits["val"],
            self.knn_k, self.knn_distance, self.num_classes, int(self.cfg.optimizer.batch_size),
            int(self.cfg.data.num_workers), self.device,
            self.trainer.precision_plugin.forward_context)
        return {"val_knn_acc1": acc1, "val_knn_acc5": acc5}


class BaseMomentumMethod(BaseMethod):
    """BaseMethod plus a momentum backbone (solo-learn's BaseMomentumMethod contract): an EMA
    copy of the backbone, updated after every optimizer step with a coefficient rising from
    ``momentum.base_tau`` to ``momentum.final_tau`` along a half cosine over the run's steps.

    Cfg: ``momentum: {base_tau, final_tau, classifier}`` (``clinfonce_plugin.config``; the
    runtime has no momentum classifier and refuses ``classifier: true``). Subclasses extend
    ``momentum_pairs`` with their own (online, momentum) module pairs and ``momentum_forward``
    with their momentum heads; ``training_step`` adds ``momentum_<key>`` lists (one entry per
    large crop) of ``momentum_forward``'s outputs.
    """

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        self.momentum_backbone = copy.deepcopy(self.backbone)
        init_momentum_(self.backbone, self.momentum_backbone)
        self.base_tau: float = cfg.momentum.base_tau
        self.final_tau: float = cfg.momentum.final_tau
        self._last_step = 0

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        cfg = BaseMethod.add_and_assert_specific_cfg(cfg)
        if cfg.momentum.classifier:
            raise ConfigError("momentum.classifier: the bundled runtime has no momentum "
                             "classifier (solo-learn has): set it to false")
        if cfg.momentum.base_tau > cfg.momentum.final_tau:
            raise ConfigError(f"momentum.base_tau ({cfg.momentum.base_tau}) must not exceed "
                             f"momentum.final_tau ({cfg.momentum.final_tau})")
        return cfg

    @property
    def momentum_pairs(self) -> List[Tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.momentum_backbone)]

    @torch.no_grad()
    def momentum_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        return {"feats": self.momentum_backbone(self._memory_format(X))}

    def training_step(self, batch: List[Any], batch_idx: int) -> Dict[str, Any]:
        outs = super().training_step(batch, batch_idx)
        X = batch[1]
        X = [X] if isinstance(X, torch.Tensor) else X
        mom = [self.momentum_forward(x) for x in X[: self.num_large_crops]]
        outs.update({f"momentum_{k}": [m[k] for m in mom] for k in mom[0]})
        return outs

    def on_train_start(self):
        # a resumed run continues from its restored step, not from 0
        self._last_step = self.trainer.global_step

    def on_train_batch_end(self, outputs, batch, batch_idx):
        """After an optimizer step k (global_step went from k-1 to k): the EMA update with
        tau(k - 1), as solo-learn's MomentumUpdater (its first update uses base_tau). tau is
        a function of the step alone, so a resumed run continues the schedule exactly.
        Batches that only accumulate gradients move nothing."""
        step = self.trainer.global_step
        if step > self._last_step:
            max_steps = self.trainer.estimated_stepping_batches
            tau = cosine_tau(min(step - 1, max_steps), max_steps, self.base_tau, self.final_tau)
            for online, momentum in self.momentum_pairs:
                ema_update_(online, momentum, tau)
            self.log("tau", tau)
        self._last_step = step
