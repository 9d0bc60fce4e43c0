"""The checks of each job's config (pretrain, linear, fine-tune, kNN, plot), run before any
training starts: the table checks of ``validate``, then what spans keys (augmentation
pipelines, momentum, presets, ``data.num_workers=auto``)."""
import os
from typing import Any, Iterable, Mapping, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from ..errors import ConfigError
from .schema import (AUGMENTATION, AUTO_WORKERS_CAP, FINETUNE, HYDRA_KEYS, KNN, KNN_FEATURE_TYPES,
                     LINEAR, LINEAR_PRESETS, PLOT, PRETRAIN, UNSUPPORTED)
from .sources import Sources, _error
from .validate import _KINDS, fill_section, validate_run_name


def _check_pipelines(cfg: DictConfig, key: str, sources: Sources) -> ListConfig:
    augs = cfg.get(key)
    if not isinstance(augs, ListConfig) or len(augs) == 0:
        raise _error(sources, key, "expected a non-empty list of crop pipelines "
                     "(see scripts/pretrain/augmentations/)")
    for i in range(len(augs)):
        fill_section(cfg, f"{key}[{i}]", AUGMENTATION, sources)
        node = augs[i]
        if node.rrc.crop_min_scale > node.rrc.crop_max_scale:
            raise _error(sources, f"{key}[{i}].rrc.crop_min_scale",
                         f"must not exceed crop_max_scale ({node.rrc.crop_max_scale}), got "
                         f"{node.rrc.crop_min_scale}")
    return augs


def _check_augmentations(cfg: DictConfig, sources: Sources) -> None:
    augs = _check_pipelines(cfg, "augmentations", sources)
    epochs = cfg.warmup_augmentation_epochs
    if cfg.warmup_augmentations is None:
        if epochs:
            raise _error(sources, "warmup_augmentation_epochs", f"is {epochs} but "
                         f"warmup_augmentations is not set: give both or neither")
        return
    if not epochs:
        raise _error(sources, "warmup_augmentations", "is set but "
                     "warmup_augmentation_epochs is 0: give both or neither")
    if epochs >= cfg.max_epochs:
        raise _error(sources, "warmup_augmentation_epochs", f"must be smaller than "
                     f"max_epochs ({cfg.max_epochs}), got {epochs}: augmentations would "
                     f"never be used")
    warm = _check_pipelines(cfg, "warmup_augmentations", sources)
    # the crops of a batch must not change shape or count at the switch
    shape = [(a.crop_size, a.num_crops) for a in augs]
    warm_shape = [(a.crop_size, a.num_crops) for a in warm]
    if warm_shape != shape:
        raise _error(sources, "warmup_augmentations", f"must give the same crops as "
                     f"augmentations, entry by entry as (crop_size, num_crops): expected "
                     f"{shape}, got {warm_shape}")


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask (what taskset, cpusets, SLURM or
    torchrun leave it), else the machine's count (no mask on macOS and Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def auto_num_workers(processes: int = 1, cores: Optional[int] = None) -> int:
    """``data.num_workers=auto``: the available cores shared among the ``processes`` training
    processes of this machine, at least 1, at most ``AUTO_WORKERS_CAP``."""
    cores = available_cores() if cores is None else cores
    return max(1, min(AUTO_WORKERS_CAP, cores // max(1, processes)))


def processes_per_machine(devices: Any, accelerator: Any = "auto") -> int:
    """Training processes Lightning starts on each machine for ``devices``: the length of a
    device list, a positive count, else (auto, -1) every GPU when one is used, or 1."""
    if isinstance(devices, (list, tuple, ListConfig)):
        return max(1, len(devices))
    if isinstance(devices, str):
        ids = [d for d in devices.split(",") if d.strip()]
        if "," in devices:
            return max(1, len(ids))
        devices = int(devices) if devices.strip().lstrip("-").isdigit() else -1
    if isinstance(devices, int) and devices > 0:
        return devices
    if accelerator == "cpu":
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def _resolve_num_workers(cfg: DictConfig, sources: Sources, processes: int) -> None:
    """``data.num_workers``: an integer as given, ``auto`` replaced by ``auto_num_workers``."""
    value = cfg.data.num_workers
    if isinstance(value, str):
        if value != "auto":
            raise _error(sources, "data.num_workers", f"expected an integer >= 0 or auto, "
                         f"got {value!r}")
        cfg.data.num_workers = auto_num_workers(processes)


def check_pretrain_cfg(cfg: DictConfig, datasets: Iterable[str], methods: Iterable[str],
                       source: Any = None) -> DictConfig:
    """Checks every key (names, kinds, ranges) and fills the defaults of a pretrain config,
    before the host's parse_cfg. Raises ConfigError naming the key and its location."""
    sources = Sources.of(source)
    OmegaConf.set_struct(cfg, False)
    with open_dict(cfg):
        for key in HYDRA_KEYS:
            cfg.pop(key, None)
        fill_section(cfg, "", PRETRAIN, sources, UNSUPPORTED, ignore=("augmentations",))
        if cfg.method not in methods:
            raise _error(sources, "method", f"unknown method {cfg.method!r}. "
                         f"Choose from {sorted(methods)}")
        _check_momentum(cfg, methods, sources)
        if cfg.data.dataset not in datasets:
            raise _error(sources, "data.dataset", f"unknown dataset {cfg.data.dataset!r}. "
                         f"Choose from {sorted(datasets)}")
        _check_augmentations(cfg, sources)
        cfg.name = cfg.name or f"{cfg.method}-{cfg.data.dataset}"
        try:
            validate_run_name(cfg.name)
        except ConfigError as err:
            raise _error(sources, "name", str(err).split(": ", 1)[1]) from None
        verify = cfg.data.verify_images
        if isinstance(verify, str) and verify != "auto":
            raise _error(sources, "data.verify_images",
                         f"expected true, false or auto, got {verify!r}")
        if cfg.resume and cfg.resume_from_checkpoint:
            raise _error(sources, "resume", "give either resume=true or "
                         "resume_from_checkpoint=<file>, not both")
        _check_knn_eval(cfg, sources)
        _resolve_num_workers(cfg, sources, processes_per_machine(cfg.devices, cfg.accelerator))
    return cfg


def uses_momentum(method_class: Any) -> bool:
    """Whether a registered method class has a momentum encoder: solo-learn's
    BaseMomentumMethod and the runtime's define ``momentum_pairs``."""
    return hasattr(method_class, "momentum_pairs")


def _check_momentum(cfg: DictConfig, methods: Iterable[str], sources: Sources) -> None:
    """The ``momentum`` section (checked and filled with the rest) stays for a method with a
    momentum encoder; any other method refuses it unless it holds the defaults (as in the
    resolved config of another run), and then it is dropped."""
    method_class = methods.get(cfg.method) if isinstance(methods, Mapping) else None
    if uses_momentum(method_class):
        if cfg.momentum.base_tau > cfg.momentum.final_tau:
            raise _error(sources, "momentum.base_tau", f"must not exceed momentum.final_tau "
                         f"({cfg.momentum.final_tau}), got {cfg.momentum.base_tau}")
        return
    for key, spec in PRETRAIN["momentum"].items():
        if cfg.momentum[key] != spec.default:
            raise _error(sources, f"momentum.{key}", f"method {cfg.method} has no momentum "
                         f"encoder and does not read the momentum section: remove it")
    cfg.pop("momentum")


def _check_knn_eval(cfg: DictConfig, sources: Sources) -> None:
    """The online kNN's distance is one the classifier knows, and it has a split to classify."""
    from ..metrics.knn import DISTANCES

    if cfg.knn_eval.distance_func not in DISTANCES:
        raise _error(sources, "knn_eval.distance_func", f"expected one of {list(DISTANCES)}, "
                     f"got {cfg.knn_eval.distance_func!r}")
    if cfg.knn_eval.enabled and not cfg.data.val_path:
        raise _error(sources, "knn_eval.enabled", "the online kNN classifies the validation "
                     "split: set data.val_path (or knn_eval.enabled=false)")


def _check_eval_cfg(cfg: DictConfig, table: dict, sources: "Sources") -> DictConfig:
    """The checks every evaluation config shares: hydra keys dropped, every key of ``table``
    checked and filled, the run name validated."""
    OmegaConf.set_struct(cfg, False)
    with open_dict(cfg):
        for key in HYDRA_KEYS:
            cfg.pop(key, None)
        fill_section(cfg, "", table, sources)
        _resolve_num_workers(cfg, sources, processes=1)  # evaluations run on one device
        if cfg.name is not None:
            try:
                validate_run_name(cfg.name)
            except ConfigError as err:
                raise _error(sources, "name", str(err).split(": ", 1)[1]) from None
    return cfg


def check_linear_cfg(cfg: DictConfig, source: Any = None) -> DictConfig:
    """Checks and fills a linear-evaluation config; keys left unset stay None until
    ``linear_preset`` fills them (the paper preset depends on the checkpoint's method)."""
    sources = Sources.of(source)
    cfg = _check_eval_cfg(cfg, LINEAR, sources)
    if cfg.protocol == "features":
        # keys only protocol=paper reads: refused rather than ignored
        for key, unused in (("crop_min_scale", None), ("paper_preset", "auto")):
            if cfg[key] != unused:
                raise _error(sources, key, f"only used by protocol=paper (protocol is "
                             f"features), got {cfg[key]!r}")
    return cfg


def linear_preset(cfg: DictConfig, method: str, source: Any = None) -> str:
    """Fills the keys a checked linear config left unset from ``LINEAR_PRESETS`` and returns
    the preset's name: ``features`` for protocol=features; for protocol=paper,
    ``paper_preset`` (auto: ``wcl`` for a wcl checkpoint, else ``clinfonce``)."""
    if cfg.protocol == "features":
        name = "features"
    elif cfg.paper_preset != "auto":
        name = cfg.paper_preset
    else:
        name = "wcl" if method == "wcl" else "clinfonce"
    _fill_unset(cfg, LINEAR_PRESETS[name])
    _check_nesterov(cfg, Sources.of(source))
    return name


def _check_nesterov(cfg: DictConfig, sources: Sources) -> None:
    o = cfg.optimizer
    if o.name == "sgd" and o.nesterov and o.momentum == 0:
        raise _error(sources, "optimizer.nesterov", "Nesterov momentum needs "
                     "optimizer.momentum > 0 (momentum is 0)")


def _fill_unset(node: DictConfig, values: Mapping[str, Any]) -> None:
    with open_dict(node):
        for key, value in values.items():
            if isinstance(value, Mapping):
                _fill_unset(node[key], value)
            elif node.get(key) is None:
                node[key] = value


def check_finetune_cfg(cfg: DictConfig, source: Any = None) -> DictConfig:
    """Checks and fills a fine-tuning config: exactly one of ``label_fraction`` and
    ``subset_file``; ``subset_seed`` only with ``label_fraction``; decay epochs positive
    integers in increasing order."""
    sources = Sources.of(source)
    cfg = _check_eval_cfg(cfg, FINETUNE, sources)
    if (cfg.label_fraction is None) == (cfg.subset_file is None):
        raise _error(sources, "label_fraction", "give label_fraction (a per-class draw) or "
                     "subset_file (a list of images), exactly one of them")
    if cfg.subset_file is not None and cfg.subset_seed != 0:
        raise _error(sources, "subset_seed", f"only used with label_fraction (subset_file "
                     f"lists the images), got {cfg.subset_seed}")
    _check_nesterov(cfg, sources)
    steps = list(cfg.scheduler.lr_decay_steps)
    if any(not _KINDS["int"](s) or s < 1 for s in steps) or steps != sorted(set(steps)):
        raise _error(sources, "scheduler.lr_decay_steps", f"expected increasing integers "
                     f">= 1, got {steps}")
    return cfg


def check_plot_cfg(cfg: DictConfig, source: Any = None) -> DictConfig:
    """Checks and fills a t-SNE picture config (``plot_embedding``)."""
    return _check_eval_cfg(cfg, PLOT, Sources.of(source))


def check_knn_cfg(cfg: DictConfig, source: Any = None) -> DictConfig:
    """Checks and fills a kNN-evaluation config (``k`` positive integers, distances from
    ``metrics.knn.DISTANCES``, feature types from ``KNN_FEATURE_TYPES``; no list empty or
    repeating a value)."""
    from ..metrics.knn import DISTANCES

    sources = Sources.of(source)
    cfg = _check_eval_cfg(cfg, KNN, sources)
    ks = list(cfg.k)
    if not ks or any(not _KINDS["int"](k) or k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise _error(sources, "k", f"expected a non-empty list of distinct integers >= 1, "
                     f"got {ks}")
    for key, valid in (("distance_function", DISTANCES), ("feature_type", KNN_FEATURE_TYPES)):
        values = list(cfg[key])
        if not values or any(v not in valid for v in values) or len(set(values)) != len(values):
            raise _error(sources, key, f"expected a non-empty list of distinct values from "
                         f"{list(valid)}, got {values}")
    return cfg
