"""The augmentation schedule: a second crop pipeline used while ``epoch < switch_epoch``
(WCL's weaker MoCo-v2 augmentation for its first 10 ImageNet epochs,
https://arxiv.org/abs/2110.04770 Sec. 4.1).

The epoch lives in an ``EpochClock``: one int64 in shared memory, created in the main process
before the dataloader workers exist, so every worker copy of the dataset (forked, spawned or
persistent) reads the value the main process sets. ``ScheduledTransform`` picks its pipeline
from the clock at each call, inside the worker; the runner's callback sets the clock (see
``callbacks.AugmentationClock``). Plain torch: no host or Lightning import.
"""
from typing import Any, Callable

import torch


class EpochClock:
    """The training epoch, readable from dataloader workers; ``epoch`` is -1 until set."""

    def __init__(self) -> None:
        self._epoch = torch.full((1,), -1, dtype=torch.long).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch[0] = int(epoch)


class ScheduledTransform:
    """``warmup(x)`` while ``clock.epoch < switch_epoch``, else ``normal(x)``.

    A clock never set (epoch -1) is an error rather than a silent choice: the pipeline of an
    epoch must not depend on whether the runner remembered to set it.
    """

    def __init__(self, warmup: Callable[[Any], Any], normal: Callable[[Any], Any],
                 switch_epoch: int, clock: EpochClock) -> None:
        if switch_epoch < 1:
            raise ValueError(f"switch_epoch must be >= 1, got {switch_epoch}")
        if not (callable(warmup) and callable(normal)):
            raise ValueError("warmup and normal must be callable transforms")
        self.warmup, self.normal = warmup, normal
        self.switch_epoch, self.clock = int(switch_epoch), clock

    def active(self) -> Callable[[Any], Any]:
        """The pipeline of the clock's epoch."""
        epoch = self.clock.epoch
        if epoch < 0:
            raise RuntimeError("the augmentation schedule's epoch clock was never set")
        return self.warmup if epoch < self.switch_epoch else self.normal

    def __call__(self, x: Any) -> Any:
        return self.active()(x)

    def __repr__(self) -> str:
        return (f"ScheduledTransform(epochs < {self.switch_epoch}: {self.warmup!r}; "
                f"then: {self.normal!r})")
