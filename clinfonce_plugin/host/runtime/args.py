"""parse_cfg of the bundled runtime: solo-learn's derived values on a config whose keys and
defaults were already checked and filled by ``clinfonce_plugin.config``."""
import omegaconf

N_CLASSES_PER_DATASET = {"cifar10": 10, "cifar100": 100, "stl10": 10, "imagenet": 1000,
                         "imagenet100": 100}
# per-optimizer kwargs solo-learn's parse_cfg fills (the host's optimiser defaults)
OPTIMIZER_KWARGS = {"sgd": {"momentum": 0.9},
                    "lars": {"momentum": 0.9, "eta": 1e-3, "clip_lr": False,
                             "exclude_bias_n_norm": False},
                    "adamw": {"betas": [0.9, 0.999]}}


def num_devices(cfg: omegaconf.DictConfig) -> int:
    devices = cfg.devices
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str):
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    return len(devices)


def parse_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
    """Class count, crop counts, the linear lr scaling rule and optimiser kwargs."""
    if cfg.data.num_classes is None:
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

    # linear lr scaling rule, as solo-learn: lr * total_batch / 256
    scale = cfg.optimizer.batch_size * num_devices(cfg) * cfg.num_nodes / 256
    cfg.optimizer.lr = cfg.optimizer.lr * scale
    if cfg.data.val_path is not None:
        cfg.optimizer.classifier_lr = cfg.optimizer.classifier_lr * scale

    for key, value in OPTIMIZER_KWARGS.get(cfg.optimizer.name, {}).items():
        if cfg.optimizer.kwargs.get(key) is None:
            cfg.optimizer.kwargs[key] = value
    return cfg
