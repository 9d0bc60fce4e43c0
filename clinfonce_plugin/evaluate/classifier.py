"""The classifier trainer shared by linear evaluation and fine-tuning: a head on the output of
a backbone that is frozen, trained, or absent (the inputs are features already), SGD or
AdamW with a cosine or step learning-rate schedule, top-1/top-5 on the test loader."""
from dataclasses import dataclass
from typing import Optional, Sequence

import lightning.pytorch as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..host.runtime.optim import warmup_cosine_factor


@dataclass(frozen=True)
class Schedule:
    """The lr multiplier: ``cosine`` from 1 down to ``min_lr_ratio`` over the run, evaluated
    once per epoch or at every optimizer step (``interval``); ``step`` multiplies by
    ``gamma`` at each epoch of ``milestones``."""
    name: str = "cosine"
    interval: str = "epoch"
    min_lr_ratio: float = 0.0
    milestones: Sequence[int] = ()
    gamma: float = 0.1

    def factor(self, step: int, steps_per_epoch: int, max_epochs: int) -> float:
        """Multiplier of the base lr during optimizer step ``step`` (0-based)."""
        epoch = step // steps_per_epoch
        if self.name == "step":
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.interval == "epoch":
            return warmup_cosine_factor(epoch, 0, max_epochs, 1.0, self.min_lr_ratio)
        return warmup_cosine_factor(step, 0, max_epochs * steps_per_epoch, 1.0,
                                    self.min_lr_ratio)


@dataclass(frozen=True)
class Optimization:
    """Optimizer settings (learning rates already scaled, if they are): ``head_lr`` for the
    head and ``backbone_lr`` for a trained backbone."""
    name: str
    head_lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    schedule: Schedule
    backbone_lr: Optional[float] = None


def scaled_lr(lr: float, batch_size: int, scale: bool) -> float:
    """``lr x batch_size / 256`` when ``scale``, else ``lr`` (the papers' linear-scaling
    rule)."""
    return lr * batch_size / 256 if scale else lr


class Classifier(pl.LightningModule):
    """``head(backbone(x))``, or ``head(x)`` without a backbone. A frozen backbone stays in
    eval mode with no gradient (its batch-norm statistics never change); a trained one is
    optimised at ``opt.backbone_lr``."""

    def __init__(self, head: nn.Module, opt: Optimization, steps_per_epoch: int,
                 max_epochs: int, backbone: Optional[nn.Module] = None,
                 train_backbone: bool = False):
        super().__init__()
        if train_backbone and (backbone is None or opt.backbone_lr is None):
            raise ValueError("train_backbone needs a backbone and opt.backbone_lr")
        self.backbone, self.head = backbone, head
        self.train_backbone = train_backbone
        self.opt, self.steps_per_epoch, self.max_epochs = opt, steps_per_epoch, max_epochs
        if backbone is not None and not train_backbone:
            backbone.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        # a module starts in train mode, and a fit may switch all of it back to train mode
        super().train(mode)
        if self.backbone is not None and not self.train_backbone:
            self.backbone.eval()
        return self

    def forward(self, x):
        if self.backbone is not None:
            with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
                x = self.backbone(x)
        return self.head(x)

    def training_step(self, batch, _):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def test_step(self, batch, _):
        x, y = batch
        logits = self(x)
        top = logits.topk(min(5, logits.size(1)), dim=1).indices  # top-min(5, C)
        self.log_dict({"test_acc1": (top[:, 0] == y).float().mean(),
                       "test_acc5": (top == y[:, None]).any(1).float().mean()},
                      on_epoch=True, batch_size=len(y))

    def configure_optimizers(self):
        o = self.opt
        groups = [{"params": list(self.head.parameters()), "lr": o.head_lr}]
        if self.train_backbone:
            groups.append({"params": list(self.backbone.parameters()), "lr": o.backbone_lr})
        if o.name == "sgd":
            opt = torch.optim.SGD(groups, lr=o.head_lr, momentum=o.momentum,
                                  nesterov=o.nesterov, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.AdamW(groups, lr=o.head_lr, weight_decay=o.weight_decay)
        # LambdaLR counts optimizer steps: one factor function serves both intervals
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: o.schedule.factor(step, self.steps_per_epoch, self.max_epochs))
        return [opt], [{"scheduler": sched, "interval": "step"}]


class StandardizedLinear(nn.Module):
    """A linear layer on features standardised with fixed statistics (the features
    protocol's classifier). ``mean``, ``std``: (D,)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.fc = nn.Linear(mean.numel(), num_classes)

    def forward(self, x):
        return self.fc((x - self.mean) / self.std)
