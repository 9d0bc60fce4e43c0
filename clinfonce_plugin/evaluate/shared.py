"""What the classifier evaluations (linear, fine-tuning) share around their model: the
optimizer settings read from a config, training and testing with Lightning on one device,
and the result JSON written atomically."""
import os
import warnings
from typing import Tuple

import lightning.pytorch as pl
import omegaconf
import torch
from lightning.pytorch.loggers import CSVLogger

from torch.utils.data import DataLoader, TensorDataset

from .classifier import Optimization, Schedule, scaled_lr
from ..data.indexed import TransformedImages
from ..utils.atomic import atomic_write_json
from ..utils.loading import loader_options
from ..data.transforms import classifier_train_transform, eval_transform
from ..utils.devices import lightning_accelerator
from ..run.zoo import default_output_dir


def optimization(cfg: omegaconf.DictConfig, head_lr: float, backbone_lr=None) -> Optimization:
    """The settings of ``cfg.optimizer`` / ``cfg.scheduler`` (missing scheduler keys take
    the Schedule defaults), each lr scaled by batch/256 when ``optimizer.scale_lr``."""
    o, s = cfg.optimizer, cfg.scheduler

    def lr(value):
        return None if value is None else scaled_lr(value, o.batch_size, o.scale_lr)

    # the keys the job's scheduler table has (linear: interval and min_lr_ratio of its
    # cosine; fine-tuning: also name, lr_decay_steps and gamma); Schedule has the others
    fields = {"name": "name", "interval": "interval", "min_lr_ratio": "min_lr_ratio",
              "lr_decay_steps": "milestones", "gamma": "gamma"}
    schedule = Schedule(**{field: tuple(s[key]) if key == "lr_decay_steps" else s[key]
                           for key, field in fields.items() if key in s})
    return Optimization(name=o.name, head_lr=lr(head_lr), backbone_lr=lr(backbone_lr),
                        momentum=o.momentum, nesterov=o.nesterov,
                        weight_decay=o.weight_decay, schedule=schedule)


def crop_loaders(pre_cfg, train_images, test_images, crop_min_scale: float, batch_size: int,
                 test_batch_size: int, workers: int, cuda: bool = False):
    """(train loader, test loader) on images: the training images through a random-resized
    crop (area fraction [crop_min_scale, 1]) + flip drawn anew at every epoch, shuffled; the
    test images through the pretrain run's centre crop. A last training batch of a single
    image is dropped: batch norm in train mode cannot normalise one image. ``cuda``: the
    batches go to a CUDA device (pinned memory); the training workers persist across
    epochs."""
    train = TransformedImages(train_images, classifier_train_transform(pre_cfg, crop_min_scale))
    test = TransformedImages(test_images, eval_transform(pre_cfg))
    lone = len(train) > 1 and len(train) % batch_size == 1
    return (DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=lone,
                       **loader_options(workers, cuda)),
            DataLoader(test, batch_size=test_batch_size,
                       **loader_options(workers, cuda, persistent=False)))


def output_place(cfg: omegaconf.DictConfig, ckpt: str, default_name: str) -> Tuple[str, str]:
    """(directory, name) of a run's results: ``output_dir`` (default: the checkpoint's
    directory, ``trained_models/zoo`` for a zoo entry) and ``name`` (default
    ``default_name``)."""
    out_dir = cfg.get("output_dir") or default_output_dir(cfg.pretrained, ckpt)
    return out_dir, cfg.get("name") or default_name


def log_version(out_dir: str, logs: str, name: str) -> str:
    """``name``, or ``name-1``, ``name-2``, ... : the first version whose directory
    ``<out_dir>/<logs>/<version>`` does not exist. A rerun under the same name keeps the
    earlier log (Lightning's CSV logger would delete it, or, before 2.2, fail to rewrite
    its header)."""
    version, n = name, 0
    while os.path.exists(os.path.join(out_dir, logs, version)):
        n += 1
        version = f"{name}-{n}"
    return version


def fit_and_test(model: pl.LightningModule, train_loader, test_loader, cfg,
                 device: torch.device, out_dir: str, logs: str, name: str) -> dict:
    """Trains ``model`` for ``cfg.max_epochs`` on ``device`` (CSV log in
    ``<out_dir>/<logs>/<log_version(...)>``) and returns the test metrics (test_acc1,
    test_acc5)."""
    logger = CSVLogger(out_dir, name=logs, version=log_version(out_dir, logs, name))
    trainer = pl.Trainer(max_epochs=cfg.max_epochs, accelerator=lightning_accelerator(device),
                         devices=1, logger=logger,
                         enable_checkpointing=False,
                         enable_progress_bar=cfg.enable_progress_bar,
                         log_every_n_steps=1)
    with warnings.catch_warnings():
        # a frozen backbone is in eval mode on purpose
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        for stage, loader in (("train", train_loader), ("test", test_loader)):
            if isinstance(loader.dataset, TensorDataset):
                # features already in memory: a worker process would only copy them
                warnings.filterwarnings(
                    "ignore", message=f"The '{stage}_dataloader' does not have many workers")
        trainer.fit(model, train_loader)
        return trainer.test(model, test_loader, verbose=False)[0]


def write_results(out_dir: str, name: str, results: dict) -> str:
    """Writes ``<out_dir>/<name>.json`` in one ``os.replace`` (a reader never sees half a
    file) and returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    atomic_write_json(path, results, indent=2)
    return path
