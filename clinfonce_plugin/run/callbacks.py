"""Lightning callbacks of the pretrain runner: the periodic atomic checkpoint, the random
number generators' state in it (so a resumed run draws what the uninterrupted one would),
and the stop on a non-finite loss."""
import errno
import math
import os
import random
from typing import Any, Dict, List, Optional

import lightning.pytorch as pl
import numpy as np
import torch

from ..errors import TrainingDiverged
from ..utils.atomic import atomic_path

LAST = "last.ckpt"
_LIGHTNING_BEFORE_2_2 = tuple(int(x) for x in pl.__version__.split(".")[:2]) < (2, 2)


class PeriodicCheckpoint(pl.Callback):
    """Writes ``<dirpath>/last.ckpt`` after every ``every_n_epochs`` epochs: to a temporary
    file first, flushed to disk, then renamed over the previous one, so a kill or a full
    disk mid-write leaves the previous checkpoint intact."""

    def __init__(self, dirpath: str, every_n_epochs: int = 1):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.dirpath, self.every_n_epochs = dirpath, every_n_epochs

    @property
    def path(self) -> str:
        return os.path.join(self.dirpath, LAST)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        if trainer.is_global_zero and not os.path.isdir(self.dirpath):
            # the run directory was removed or replaced: Lightning's save would make a new one
            raise FileNotFoundError(errno.ENOENT, "the run directory is gone", self.dirpath)
        # collective: every rank builds it, rank 0 writes, flushes and renames it
        with atomic_path(self.path, fsync=True, commit=trainer.is_global_zero) as tmp:
            trainer.save_checkpoint(tmp)
        trainer.strategy.barrier("clinfonce.last_ckpt")


class ScheduleFromConfig(pl.Callback):
    """Makes a resumed run follow the schedule of its current config (a ``max_epochs``
    changed on resume), from the first resumed step.

    - A ``LambdaLR`` (the bundled runtime's cosine): its function is the current config's;
      each learning rate is set from it at the restored step when training starts (the
      optimiser came back with the rate its checkpoint stored).
    - A scheduler that keeps its horizon in its state (solo-learn's
      ``LinearWarmupCosineAnnealingLR``: ``warmup_epochs``, ``max_epochs``): the horizon the
      current config built is recorded at ``on_fit_start`` (after the schedulers are made,
      before the checkpoint's state overwrites them), put back when training starts, and
      each learning rate set from the schedule's closed form at the restored step.
    """

    HORIZON = ("warmup_epochs", "max_epochs")

    def __init__(self) -> None:
        self._horizons: List[Dict[str, Any]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._horizons = [
            {key: getattr(config.scheduler, key) for key in self.HORIZON
             if hasattr(config.scheduler, key)} for config in trainer.lr_scheduler_configs]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for i, config in enumerate(trainer.lr_scheduler_configs):
            scheduler = config.scheduler
            groups = scheduler.optimizer.param_groups
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                lrs = [base * factor(scheduler.last_epoch)
                       for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
            else:
                horizon = self._horizons[i] if i < len(self._horizons) else {}
                if (trainer.ckpt_path is None or len(horizon) != len(self.HORIZON)
                        or not hasattr(scheduler, "_get_closed_form_lr")):
                    continue
                for key, value in horizon.items():
                    setattr(scheduler, key, value)
                lrs = scheduler._get_closed_form_lr()
            for group, lr in zip(groups, lrs):
                group["lr"] = lr
            scheduler._last_lr = [group["lr"] for group in groups]


class RNGState(pl.Callback):
    """Stores the torch, numpy and python generators in the checkpoint and restores them on
    resume: the next epoch's shuffle and (in-process) augmentations then match an
    uninterrupted run. Saved as plain tensors (loads with weights_only=True).

    The state is saved at the end of an epoch and put back when the checkpoint is loaded.
    Lightning before 2.2 (solo-learn pins 2.1.2) runs code that draws random numbers after
    the checkpoint is loaded and before the epoch's data iterator starts; there the state is
    put back once more at the start of the first resumed epoch (found by the SIGKILL-resume
    test, which passes on both versions)."""

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None

    def state_dict(self) -> Dict[str, Any]:
        _, keys, pos, has_gauss, gauss = np.random.get_state()
        version, py_state, _ = random.getstate()
        state = {"torch": torch.get_rng_state(),
                 "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
                 "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss),
                 "numpy_gauss": float(gauss),
                 "python": torch.tensor(py_state, dtype=torch.int64), "python_version": version}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._restore(state)
        if _LIGHTNING_BEFORE_2_2:
            self._pending = state

    @staticmethod
    def _restore(state: Dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                             state["numpy_pos"], state["numpy_has_gauss"],
                             state["numpy_gauss"]))
        random.setstate((state["python_version"],
                         tuple(int(v) for v in state["python"].tolist()), None))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class FiniteLoss(pl.Callback):
    """Stops training on the first non-finite loss, before its backward pass changes the
    weights, naming the step and the last finite value (one scalar check per step)."""

    def __init__(self) -> None:
        self.last_finite: Optional[float] = None
        self.last_step: Optional[int] = None

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           loss: torch.Tensor) -> None:
        value = float(loss.detach())
        if math.isfinite(value):
            self.last_finite, self.last_step = value, trainer.global_step
            return
        last = ("no finite loss before it" if self.last_finite is None else
                f"last finite loss {self.last_finite:.6g} at step {self.last_step}")
        raise TrainingDiverged(
            f"the loss is {value} at epoch {trainer.current_epoch}, step {trainer.global_step} "
            f"({last}); training stopped before the weights changed. Lower optimizer.lr "
            f"(now {getattr(pl_module, 'lr', '?')}) or check the data")


class AugmentationClock(pl.Callback):
    """Sets the ``EpochClock`` the scheduled augmentations of the training set read in the
    dataloader workers: the epoch about to be trained, before its batches are made.

    Lightning creates the training iterator (starting the workers' prefetching) before
    ``on_train_start``, so the first epoch is set earlier: 0 at ``setup``, or on resume the
    checkpoint's next epoch when the checkpoint is loaded (after ``setup``, before the
    iterator). Later epochs are set at the end of the previous one, before the next
    iterator starts; ``on_train_start`` and ``on_train_epoch_start`` set the same values
    again."""

    def __init__(self, clock) -> None:
        self.clock = clock

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.clock.set(0)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        self.clock.set(resume_epoch(checkpoint))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.clock.set(trainer.current_epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.clock.set(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.clock.set(trainer.current_epoch + 1)


def resume_epoch(checkpoint: Dict[str, Any]) -> int:
    """The epoch a Lightning checkpoint resumes training at: the fit loop's count of
    processed epochs (an epoch-end checkpoint counts its epoch as processed, a mid-epoch one
    does not: that epoch is trained again), which Lightning turns into ``current_epoch``."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(checkpoint.get("epoch", 0))


class BackboneOrigin(pl.Callback):
    """Writes into every checkpoint where its backbone weights come from, so another host
    (or solo-learn's own tools) can load them: ``checkpoint["clinfonce_backbone"]`` =
    ``{"host", "name", "prefix"}``, ``prefix`` being what the host puts before the network's
    own keys inside ``backbone.`` (``"model."`` for a timm model wrapped for solo-learn, ``""``
    otherwise)."""

    def __init__(self, host_name: str, backbone_name: str) -> None:
        self.origin = {"host": host_name, "name": backbone_name}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        checkpoint["clinfonce_backbone"] = backbone_origin(
            self.origin["host"], self.origin["name"], pl_module.backbone)


def backbone_origin(host_name: str, backbone_name: str, backbone: torch.nn.Module
                    ) -> Dict[str, str]:
    """``{"host", "name", "prefix"}`` of ``backbone`` (see BackboneOrigin)."""
    keys = list(backbone.state_dict())
    prefix = "model." if keys and all(k.startswith("model.") for k in keys) else ""
    return {"host": host_name, "name": backbone_name, "prefix": prefix}
