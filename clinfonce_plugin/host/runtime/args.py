"""parse_cfg of the bundled runtime: solo-learn's pretrain defaults and derived values."""
import omegaconf

from .cfg_utils import select

N_CLASSES_PER_DATASET = {"cifar10": 10, "cifar100": 100, "stl10": 10, "imagenet": 1000,
                         "imagenet100": 100}


def num_devices(cfg: omegaconf.DictConfig) -> int:
    devices = select(cfg, "devices", 1)
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str):
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    return len(devices)


def parse_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
    """Fills solo-learn's pretrain defaults, counts crops and scales the lr by batch size."""
    for key in ("data.dataset", "data.train_path", "backbone.name", "method",
                "optimizer.name", "optimizer.batch_size", "optimizer.lr", "augmentations"):
        if select(cfg, key) is None:
            raise ValueError(f"missing required config key {key}")
    cfg.checkpoint = select(cfg, "checkpoint", {})
    cfg.checkpoint.enabled = select(cfg, "checkpoint.enabled", True)
    cfg.checkpoint.dir = select(cfg, "checkpoint.dir", "trained_models")
    cfg.checkpoint.frequency = select(cfg, "checkpoint.frequency", 1)
    cfg.checkpoint.keep_prev = select(cfg, "checkpoint.keep_prev", False)
    cfg.auto_resume = select(cfg, "auto_resume", {})
    cfg.auto_resume.enabled = select(cfg, "auto_resume.enabled", False)
    cfg.auto_resume.max_hours = select(cfg, "auto_resume.max_hours", 36)

    cfg.data.val_path = select(cfg, "data.val_path", None)
    cfg.data.format = select(cfg, "data.format", "image_folder")
    cfg.data.no_labels = select(cfg, "data.no_labels", False)
    cfg.data.fraction = select(cfg, "data.fraction", -1)
    cfg.debug_augmentations = select(cfg, "debug_augmentations", False)

    cfg.wandb = select(cfg, "wandb", {})
    cfg.wandb.enabled = select(cfg, "wandb.enabled", False)
    cfg.wandb.entity = select(cfg, "wandb.entity", None)
    cfg.wandb.project = select(cfg, "wandb.project", "solo-learn")
    cfg.wandb.offline = select(cfg, "wandb.offline", False)

    cfg.seed = select(cfg, "seed", 5)
    cfg.resume_from_checkpoint = select(cfg, "resume_from_checkpoint", None)
    cfg.strategy = select(cfg, "strategy", None)

    if select(cfg, "data.num_classes") is None:
        if cfg.data.dataset not in N_CLASSES_PER_DATASET:
            raise ValueError(f"data.num_classes is not set and dataset {cfg.data.dataset!r} "
                             f"has no known class count")
        cfg.data.num_classes = N_CLASSES_PER_DATASET[cfg.data.dataset]

    big_size = cfg.augmentations[0].crop_size
    large = small = 0
    for pipeline in cfg.augmentations:
        if pipeline.crop_size == big_size:
            large += pipeline.num_crops
        else:
            small += pipeline.num_crops
    cfg.data.num_large_crops = large
    cfg.data.num_small_crops = small

    cfg.num_nodes = select(cfg, "num_nodes", 1)
    # linear lr scaling rule, as solo-learn: lr * total_batch / 256
    scale = cfg.optimizer.batch_size * num_devices(cfg) * cfg.num_nodes / 256
    cfg.optimizer.lr = cfg.optimizer.lr * scale
    cfg.optimizer.classifier_lr = select(cfg, "optimizer.classifier_lr", 0.1)
    if cfg.data.val_path is not None:
        cfg.optimizer.classifier_lr = cfg.optimizer.classifier_lr * scale

    cfg.optimizer.kwargs = select(cfg, "optimizer.kwargs", {})
    if cfg.optimizer.name == "sgd":
        cfg.optimizer.kwargs.momentum = select(cfg, "optimizer.kwargs.momentum", 0.9)
    elif cfg.optimizer.name == "lars":
        cfg.optimizer.kwargs.momentum = select(cfg, "optimizer.kwargs.momentum", 0.9)
        cfg.optimizer.kwargs.eta = select(cfg, "optimizer.kwargs.eta", 1e-3)
        cfg.optimizer.kwargs.clip_lr = select(cfg, "optimizer.kwargs.clip_lr", False)
        cfg.optimizer.kwargs.exclude_bias_n_norm = select(
            cfg, "optimizer.kwargs.exclude_bias_n_norm", False)
    elif cfg.optimizer.name == "adamw":
        cfg.optimizer.kwargs.betas = select(cfg, "optimizer.kwargs.betas", [0.9, 0.999])
    return cfg
