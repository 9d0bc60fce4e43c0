"""The pretrain/linear config schema: every key, its default, and the checks run before any
training starts. solo-learn's key names and meaning are kept; unknown keys are errors."""
import os
import re
from typing import Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from .cfgcheck import REQUIRED, ConfigError, check_known_keys, fill_defaults

TOP_LEVEL = {
    # solo-learn's pretrain keys
    "defaults", "hydra", "name", "method", "backbone", "method_kwargs", "data", "optimizer",
    "scheduler", "checkpoint", "auto_resume", "max_epochs", "devices", "sync_batchnorm",
    "accelerator", "strategy", "precision", "augmentations", "wandb", "seed", "knn_eval",
    "performance", "accumulate_grad_batches", "num_nodes", "resume_from_checkpoint",
    "debug_augmentations", "dali", "auto_umap",
    # Lightning pass-through knobs used for short runs
    "limit_train_batches", "limit_val_batches", "log_every_n_steps", "num_sanity_val_steps",
    "enable_progress_bar",
}
BACKBONE = {"name": REQUIRED, "kwargs": {}, "cifar_stem": False}
DATA = {"dataset": REQUIRED, "train_path": REQUIRED, "val_path": None, "format": "image_folder",
        "num_workers": 2, "no_labels": False, "fraction": -1, "num_classes": None,
        "num_large_crops": None, "num_small_crops": None}
OPTIMIZER = {"name": REQUIRED, "batch_size": REQUIRED, "lr": REQUIRED, "classifier_lr": 0.1,
             "weight_decay": 0.0, "kwargs": {}, "exclude_bias_n_norm_wd": False}
SCHEDULER = {"name": "warmup_cosine", "warmup_epochs": 10, "warmup_start_lr": 3e-5,
             "min_lr": 0.0, "interval": "step", "lr_decay_steps": None}
CHECKPOINT = {"enabled": True, "dir": "trained_models", "frequency": 1, "keep_prev": False}
AUTO_RESUME = {"enabled": False, "max_hours": 36}
WANDB = {"enabled": False, "entity": None, "project": "solo-learn", "offline": False}
AUGMENTATION = {
    "crop_size": REQUIRED, "num_crops": REQUIRED, "mean": None, "std": None,
    "rrc": {"enabled": True, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
    "color_jitter": {"prob": 0.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0,
                     "hue": 0.0},
    "grayscale": {"prob": 0.0}, "gaussian_blur": {"prob": 0.0}, "solarization": {"prob": 0.0},
    "equalization": {"prob": 0.0}, "horizontal_flip": {"prob": 0.0},
}


def locate_key(path: Optional[str], key: str) -> str:
    """'file:line' of the first line defining ``key:`` in a yaml file, or the file alone."""
    if not path or not os.path.isfile(path):
        return path or "<config>"
    pattern = re.compile(rf"^\s*-?\s*{re.escape(key)}\s*:")
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if pattern.match(line):
                return f"{path}:{lineno}"
    return path


def _with_location(err: ConfigError, source: Optional[str]) -> ConfigError:
    match = re.search(r"unknown key\(s\) \['([^']+)'|missing required key ([\w.]+)", str(err))
    key = None
    if match:
        key = (match.group(1) or match.group(2) or "").split(".")[-1]
    where = locate_key(source, key) if key else (source or "<config>")
    return ConfigError(f"{where}: {err}")


def _fill_augmentations(cfg: DictConfig) -> None:
    augs = cfg.get("augmentations")
    if not isinstance(augs, ListConfig) or len(augs) == 0:
        raise ConfigError("augmentations must be a non-empty list of pipelines "
                          "(see scripts/pretrain/augmentations/)")
    for i, node in enumerate(augs):
        where = f"augmentations[{i}]"
        check_known_keys(node, AUGMENTATION.keys(), where)
        for key, default in AUGMENTATION.items():
            if isinstance(default, dict):
                sub = node.get(key)
                check_known_keys(sub, default.keys(), f"{where}.{key}")
                with open_dict(node):
                    merged = OmegaConf.merge(default, sub or {})
                    node[key] = merged
            elif key not in node or node[key] is None:
                if default is None:
                    continue  # optional (mean/std): the host picks a per-dataset default
                if default == REQUIRED:
                    raise ConfigError(f"missing required key {where}.{key}")
                with open_dict(node):
                    node[key] = default
        if node.crop_size <= 0 or node.num_crops <= 0:
            raise ConfigError(f"{where}: crop_size and num_crops must be positive, got "
                              f"{node.crop_size} and {node.num_crops}")


def check_pretrain_cfg(cfg: DictConfig, datasets, methods, source: Optional[str] = None):
    """Checks keys and names and fills defaults (before the host's parse_cfg).

    ``datasets``/``methods`` are the valid names. Raises ConfigError naming the file and line.
    """
    try:
        with open_dict(cfg):
            check_known_keys(cfg, TOP_LEVEL, "config (top level)")
            if cfg.get("method") is None:
                raise ConfigError("missing required key method")
            if cfg.method not in methods:
                raise ConfigError(f"unknown method {cfg.method!r}. Choose from {sorted(methods)}")
            fill_defaults(cfg, "backbone", BACKBONE)
            fill_defaults(cfg, "data", DATA)
            if cfg.data.dataset not in datasets:
                raise ConfigError(f"unknown dataset {cfg.data.dataset!r}. "
                                  f"Choose from {sorted(datasets)}")
            fill_defaults(cfg, "optimizer", OPTIMIZER)
            fill_defaults(cfg, "scheduler", SCHEDULER)
            fill_defaults(cfg, "checkpoint", CHECKPOINT)
            fill_defaults(cfg, "auto_resume", AUTO_RESUME)
            fill_defaults(cfg, "wandb", WANDB)
            _fill_augmentations(cfg)
            cfg.name = cfg.get("name") or f"{cfg.method}-{cfg.data.dataset}"
            cfg.max_epochs = cfg.get("max_epochs") or 100
            cfg.method_kwargs = cfg.get("method_kwargs") or {}
            if cfg.optimizer.batch_size <= 0 or cfg.optimizer.lr <= 0:
                raise ConfigError(f"optimizer.batch_size and optimizer.lr must be positive, got "
                                  f"{cfg.optimizer.batch_size} and {cfg.optimizer.lr}")
            if cfg.auto_resume.enabled:
                raise ConfigError("auto_resume.enabled is not supported by this project's "
                                  "runner; resume with resume_from_checkpoint=<run>/last.ckpt")
            if cfg.get("wandb") and cfg.wandb.enabled:
                raise ConfigError("wandb.enabled: this project logs to CSV; wandb needs network")
    except ConfigError as err:
        raise _with_location(err, source) from None
    return cfg
