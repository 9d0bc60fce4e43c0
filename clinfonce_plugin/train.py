"""The pretrain job behind ``main_pretrain.py``: checks the config, builds data and method from
the resolved host, trains with Lightning and writes ``<run_dir>/<name>.ckpt`` + ``args.json``."""
import json
import os
import shutil
from typing import Optional

import lightning.pytorch as pl
import omegaconf
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from . import host
from .config import check_pretrain_cfg
from .data.indexed import IndexedDataset
from .data.registry import DATASETS, build_dataset
from .host.backbone import apply_plugin_stem


def prepare_cfg(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> omegaconf.DictConfig:
    """Plugin checks (keys, names), dataset class count, then the host's own parse_cfg."""
    OmegaConf.set_struct(cfg, False)
    cfg = check_pretrain_cfg(cfg, DATASETS, host.METHODS, source)
    # (the embedded synthetic CUB is generated here on first use; nothing is downloaded)
    _, _, num_classes = build_dataset(cfg.data.dataset, cfg.data.train_path, split="train")
    cfg.data.num_classes = num_classes
    dataset = cfg.data.dataset
    if host.HOST_NAME == "solo-learn":
        # solo-learn counts devices with len(cfg.devices)
        if isinstance(cfg.get("devices", 1), int):
            cfg.devices = list(range(cfg.get("devices", 1)))
        # solo-learn only knows its own dataset names; "custom" keeps its checks meaningful
        cfg.data.dataset = "custom"
        cfg = host.parse_cfg(cfg)
        cfg.data.dataset = dataset
    else:
        cfg = host.parse_cfg(cfg)
    cfg.data.num_classes = num_classes
    # the method validates its own method_kwargs (unknown keys fail here, before training)
    host.METHODS[cfg.method].add_and_assert_specific_cfg(cfg)
    return cfg


def pretrain_transform(cfg: omegaconf.DictConfig):
    pipelines = [
        host.NCropAugmentation(host.build_transform_pipeline(cfg.data.dataset, aug), aug.num_crops)
        for aug in cfg.augmentations
    ]
    return host.FullTransformPipeline(pipelines)


def eval_transform(cfg: omegaconf.DictConfig):
    """Deterministic resize + centre crop at the large crop size (for validation/features)."""
    node = OmegaConf.create(OmegaConf.to_container(cfg.augmentations[0], resolve=True))
    node.rrc.enabled = False
    for key in ("color_jitter", "grayscale", "gaussian_blur", "solarization", "equalization",
                "horizontal_flip"):
        if key in node:
            node[key].prob = 0.0
    return host.build_transform_pipeline(cfg.data.dataset, node)


class _EvalPairs(torch.utils.data.Dataset):
    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, target = self.base[i]
        return self.transform(image), target


def build_method(cfg: omegaconf.DictConfig, sample_info=None) -> pl.LightningModule:
    cls = host.METHODS[cfg.method]
    if sample_info is not None and getattr(cls, "uses_sample_info", False):
        model = cls(cfg, sample_info=sample_info)
    else:
        model = cls(cfg)
    apply_plugin_stem(model, cfg)
    return model


def _accelerator(cfg) -> str:
    acc = cfg.get("accelerator") or "auto"
    if acc in ("gpu", "cuda") and not torch.cuda.is_available():
        print("[clinfonce] no GPU on this machine: training on the CPU")
        return "cpu"
    return acc


def _devices(cfg, accelerator: str):
    devices = cfg.get("devices") or 1
    if accelerator == "cpu":
        return len(devices) if isinstance(devices, (list, omegaconf.ListConfig)) else devices
    return OmegaConf.to_container(devices) if isinstance(devices, omegaconf.ListConfig) else devices


def run_dir_for(cfg: omegaconf.DictConfig) -> str:
    return os.path.join(cfg.checkpoint.dir, cfg.method, cfg.name)


def pretrain(cfg: omegaconf.DictConfig, source: Optional[str] = None,
             callbacks: Optional[list] = None) -> str:
    """Runs the pretrain job; returns the path of the final checkpoint. ``callbacks`` are
    extra Lightning callbacks (benchmarks use them to time epochs)."""
    cfg = prepare_cfg(cfg, source)
    pl.seed_everything(cfg.seed, workers=True)

    train_base, info, _ = build_dataset(cfg.data.dataset, cfg.data.train_path, split="train")
    model = build_method(cfg, sample_info=info)
    # a method may wrap the training set itself (e.g. WCL's KNN multi-crop); default: index
    # wrapping with the augmentation pipelines of cfg.augmentations
    make_train_dataset = getattr(model, "make_train_dataset", None)
    if make_train_dataset is not None:
        train_set = make_train_dataset(train_base, pretrain_transform(cfg))
    else:
        train_set = IndexedDataset(train_base, pretrain_transform(cfg))
    workers = int(cfg.data.num_workers)
    train_loader = DataLoader(train_set, batch_size=cfg.optimizer.batch_size, shuffle=True,
                              num_workers=workers, drop_last=True, pin_memory=False,
                              persistent_workers=workers > 0)
    if len(train_loader) == 0:
        raise ValueError(f"batch_size {cfg.optimizer.batch_size} is larger than the "
                         f"{len(train_set)} training images of {cfg.data.train_path}")
    val_loader = None
    if cfg.data.val_path:
        val_base, _, _ = build_dataset(cfg.data.dataset, cfg.data.val_path, split="test")
        val_loader = DataLoader(_EvalPairs(val_base, eval_transform(cfg)),
                                batch_size=cfg.optimizer.batch_size, num_workers=workers)

    print(f"[clinfonce] host={host.HOST_NAME} method={cfg.method} backbone={cfg.backbone.name}")
    if hasattr(model, "provider"):
        print(f"[clinfonce] clusters: {model.provider.describe()}")

    run_dir = run_dir_for(cfg)
    tmp_dir = run_dir + ".partial"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    with open(os.path.join(tmp_dir, "args.json"), "w") as f:
        json.dump(OmegaConf.to_container(cfg, resolve=True), f, indent=2, default=str)

    accelerator = _accelerator(cfg)
    callbacks = list(callbacks or [])
    if cfg.checkpoint.enabled:
        # only <run>/last.ckpt, rewritten every `frequency` epochs (the resume point)
        callbacks.append(ModelCheckpoint(dirpath=tmp_dir, save_last=True, save_top_k=0,
                                         every_n_epochs=cfg.checkpoint.frequency))
    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs,
        accelerator=accelerator,
        devices=_devices(cfg, accelerator),
        num_nodes=cfg.get("num_nodes", 1),
        strategy=cfg.get("strategy") or "auto",
        precision=cfg.get("precision") or "32-true",
        sync_batchnorm=bool(cfg.get("sync_batchnorm", False)) and accelerator != "cpu",
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        logger=CSVLogger(save_dir=tmp_dir, name="logs", version=""),
        callbacks=callbacks,
        enable_checkpointing=bool(cfg.checkpoint.enabled),
        limit_train_batches=cfg.get("limit_train_batches") or 1.0,
        limit_val_batches=cfg.get("limit_val_batches") or 1.0,
        num_sanity_val_steps=cfg.get("num_sanity_val_steps", 0) or 0,
        log_every_n_steps=cfg.get("log_every_n_steps") or 10,
        enable_progress_bar=cfg.get("enable_progress_bar", True),
        deterministic=False,
    )
    trainer.fit(model, train_loader, val_loader, ckpt_path=cfg.resume_from_checkpoint)

    final = os.path.join(tmp_dir, f"{cfg.name}.ckpt")
    trainer.save_checkpoint(final)
    if trainer.is_global_zero:
        # the finished run replaces any earlier run of the same name in one rename
        if os.path.isdir(run_dir):
            shutil.rmtree(run_dir)
        os.replace(tmp_dir, run_dir)
    ckpt = os.path.join(run_dir, f"{cfg.name}.ckpt")
    print(f"[clinfonce] checkpoint: {ckpt}")
    return ckpt
