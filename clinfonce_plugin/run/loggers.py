"""The loggers of a pretrain run, as solo-learn users expect them, each in its own folder of
the run directory: the CSV log (always, first: ``logs/metrics.csv``), TensorBoard
(``tensorboard.enabled``: ``tensorboard/``) and Weights & Biases (solo-learn's ``wandb``
keys; ``wandb.offline`` or ``WANDB_MODE=offline`` runs without a network:
``wandb/offline-run-*/``), plus the learning-rate monitor (``lr-<optimizer>/<parameter
group>`` at every logged step). The CSV log's folder holds nothing else: Lightning's CSV
writer warns about, and removes, what it finds there.

wandb and tensorboard are optional packages (the ``loggers`` extra): a config that enables
one whose package is missing fails before training with one error naming the package.
"""
import os
import secrets
from typing import List

import lightning.pytorch as pl
import omegaconf
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from omegaconf import OmegaConf

from ..utils.atomic import atomic_write_text
from ..utils.extras import require

# the wandb run id of a run directory: a resumed run continues the same wandb run
WANDB_ID_FILE = "wandb-id"
TENSORBOARD_DIR = "tensorboard"


def check_logger_packages(cfg: omegaconf.DictConfig) -> None:
    """MissingPackage (exit 2) when an enabled logger's package is not installed."""
    if cfg.wandb.enabled:
        require("wandb", "wandb", "loggers", "wandb.enabled=true")
    if cfg.tensorboard.enabled:
        require("tensorboard", "tensorboard", "loggers", "tensorboard.enabled=true")


def _wandb_id(run_dir: str, owner: bool):
    """The run's wandb id: read from ``<run_dir>/wandb-id`` when a previous start of this run
    directory wrote it, else made and written (by the process that owns the directory)."""
    path = os.path.join(run_dir, WANDB_ID_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            return f.read().strip()
    if not owner:
        return None  # only global rank 0 talks to wandb
    run_id = secrets.token_hex(4)  # 8 characters of [0-9a-f], a valid wandb id
    atomic_write_text(path, run_id + "\n")
    return run_id


def build_loggers(cfg: omegaconf.DictConfig, run_dir: str, owner: bool) -> List[Logger]:
    """The run's loggers, writing inside ``run_dir``; the CSV logger first (the one
    Lightning's ``trainer.logger`` returns)."""
    loggers: List[Logger] = [CSVLogger(save_dir=run_dir, name="logs", version="")]
    if cfg.tensorboard.enabled:
        loggers.append(TensorBoardLogger(save_dir=run_dir, name=TENSORBOARD_DIR, version="",
                                         default_hp_metric=False))
    if cfg.wandb.enabled:
        wandb_logger = WandbLogger(
            name=cfg.name, project=cfg.wandb.project, entity=cfg.wandb.entity,
            offline=cfg.wandb.offline, save_dir=run_dir, id=_wandb_id(run_dir, owner),
            config=OmegaConf.to_container(cfg, resolve=True))  # Lightning adds resume="allow"
        # Lightning passes anonymous=None, wandb's default, which recent wandb answers with
        # a deprecation warning about a setting the user never made
        init = getattr(wandb_logger, "_wandb_init", {})
        if init.get("anonymous", "set") is None:
            del init["anonymous"]
        loggers.append(wandb_logger)
    return loggers


def lr_monitor() -> LearningRateMonitor:
    """The learning rate of every parameter group, logged at every logged step (solo-learn's
    ``logging_interval="step"``)."""
    return LearningRateMonitor(logging_interval="step")


def watch(trainer: pl.Trainer, model: pl.LightningModule) -> None:
    """wandb logs the gradients every 100 steps, as solo-learn's pretraining does."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.watch(model, log="gradients", log_freq=100)


def finish_loggers(trainer: pl.Trainer) -> None:
    """Ends the wandb run before the run directory is renamed: wandb would otherwise go on
    writing to the old path until the process exits. ``run.finish()`` returns once wandb's
    service has the run's last record, not once it wrote it (under load the offline
    ``.wandb`` file could still hold only its header); ``wandb.teardown()`` waits until the
    service has written everything and stopped."""
    if not trainer.is_global_zero:
        return
    finished = False
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
            finished = True
    if finished:
        import wandb

        wandb.teardown()
