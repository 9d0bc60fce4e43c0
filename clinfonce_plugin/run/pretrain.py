"""The pretrain job behind ``main_pretrain.py``: checks the config and the data, builds the
method from the resolved host, trains with Lightning (``last.ckpt`` every
``checkpoint.frequency`` epochs, resumable) and moves the finished run into
``<checkpoint.dir>/<method>/<name>/`` (``<name>.ckpt``, ``args.json``, ``logs/``)."""
import csv
import os
from typing import Any, Optional

import lightning.pytorch as pl
import omegaconf
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from .. import host
from ..augment.device import DeviceAugmentation
from .callbacks import (AugmentationClock, BackboneOrigin, FiniteLoss, PeriodicCheckpoint,
                        RNGState, ScheduleFromConfig)
from .checkpoints import load_backbone, safe_load
from ..config import check_choice, check_pretrain_cfg
from ..data.augmentation_schedule import EpochClock
from ..data.indexed import IndexedDataset, TransformedImages
from ..utils.loading import loader_options, uses_cuda
from ..data.registry import (DATASETS, open_split, require_labels, training_sample_info,
                             verify_split)
from ..data.transforms import crop_pipelines, eval_transform, pretrain_transform
from ..errors import ConfigError, Interrupted
from .lightning_noise import lightning_noise_filtered
from .loggers import build_loggers, check_logger_packages, finish_loggers, lr_monitor, watch
from ..host.backbone import sync_momentum_modules
from ..host.method import make_method
from .resume_config import check_resume_config, previous_config, record_resume
from .rundir import RunDir
from ..utils.atomic import atomic_open, atomic_write_json
from ..utils.devices import resolve_accelerator
from .zoo import resolve_pretrained


# host methods whose positives are the targets: images without a label would be grouped
# together (solo-learn's SupCon) or silently fall back to SimCLR
HOST_LABEL_METHODS = ("supcon",)


def prepare_cfg(cfg: omegaconf.DictConfig, source: Any = None) -> omegaconf.DictConfig:
    """Plugin checks (every key, kind and range), the dataset's class count, the host's own
    parse_cfg, then the method's check of its method_kwargs."""
    return _prepare(cfg, source)[0]


def _prepare(cfg: omegaconf.DictConfig, source: Any = None):
    """``prepare_cfg``, returning also the training split it read (read once per run)."""
    cfg = check_pretrain_cfg(cfg, DATASETS, host.METHODS, source)
    # the host's own tables: solo-learn would fail on another name only when training starts
    for key, what, choices in (("optimizer.name", "optimizer", host.BaseMethod._OPTIMIZERS),
                               ("scheduler.name", "scheduler", host.BaseMethod._SCHEDULERS)):
        check_choice(cfg, key, choices, what, f"the {host.HOST_NAME} host's", source)
    check_logger_packages(cfg)
    if cfg.resume_from_checkpoint is not None:
        # loaded weights-only first: a file from outside the run must not run code
        safe_load(cfg.resume_from_checkpoint, "resume_from_checkpoint")
    train = open_split(cfg.data, "train")
    where = f"the {cfg.data.dataset} train split at {cfg.data.train_path}"
    if cfg.method in HOST_LABEL_METHODS:
        require_labels(train, f"method {cfg.method}", where)
    if cfg.data.val_path:
        require_labels(train, "the online linear probe (data.val_path is set)", where,
                       "; or leave data.val_path unset to pretrain without the probe")
    # the host's online probe is a layer with num_classes outputs: at least one, never
    # trained when no image has a label (its loss is skipped)
    cfg.data.num_classes = max(1, train.num_classes)
    cfg = host.prepare_host_cfg(cfg)
    host.METHODS[cfg.method].add_and_assert_specific_cfg(cfg)
    return cfg, train


def build_method(cfg: omegaconf.DictConfig, sample_info=None) -> pl.LightningModule:
    """The method of a prepared config (``host.method.make_method``), its backbone
    initialised from ``backbone.pretrained`` unless the run resumes. ``sample_info``: the
    training split's metadata (``pretrain`` passes the split it read); None: read here, once,
    for a method built on it."""
    if sample_info is None and getattr(host.METHODS[cfg.method], "uses_sample_info", False):
        sample_info = training_sample_info(cfg)
    model = make_method(cfg, sample_info)
    spec = cfg.backbone.get("pretrained")
    if spec and not (cfg.resume or cfg.resume_from_checkpoint):
        # a resumed run restores its own weights: the initialisation happened in its first run
        path = resolve_pretrained(spec)
        load_backbone(model.backbone, path, cfg.backbone.name)
        sync_momentum_modules(model)  # a momentum backbone starts from the same weights
        print(f"[clinfonce] backbone initialised from {path}")
    return model


def _accelerator(cfg) -> str:
    return resolve_accelerator(cfg.accelerator)


def _devices(cfg, accelerator: str):
    devices = cfg.devices
    # Lightning's CPU accelerator takes a count, not a device list (solo-learn's parse_cfg
    # turns devices into one); "auto" without a GPU is the CPU
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        return len(devices) if isinstance(devices, (list, omegaconf.ListConfig)) else devices
    return OmegaConf.to_container(devices) if isinstance(devices, omegaconf.ListConfig) else devices


def run_dir_for(cfg: omegaconf.DictConfig) -> str:
    return RunDir(cfg.checkpoint.dir, cfg.method, cfg.name).final


def _is_global_zero() -> bool:
    """Before the trainer exists: is this process global rank 0 (the one that owns the run
    directory)? Lightning's launcher, torchrun and SLURM set these variables on every rank."""
    ranks = [os.environ.get(v, "0") for v in ("RANK", "LOCAL_RANK", "NODE_RANK")]
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        ranks.append(os.environ.get("SLURM_PROCID", "0"))
    return all(r == "0" for r in ranks)


def _resume_point(cfg, run: RunDir, owner: bool) -> Optional[str]:
    explicit = cfg.resume_from_checkpoint
    if owner:
        return run.start(resume=cfg.resume, auto_resume=cfg.auto_resume.enabled,
                         max_hours=cfg.auto_resume.max_hours, resume_from=explicit,
                         overwrite=cfg.overwrite)
    if explicit is not None:
        return explicit
    if (cfg.resume or cfg.auto_resume.enabled) and os.path.isfile(run.last_checkpoint):
        return run.last_checkpoint
    return None


def _resumed_config_changes(cfg, run: RunDir) -> Optional[dict]:
    """When this run continues another (``resume``, ``auto_resume``, or
    ``resume_from_checkpoint`` in a run directory of this project): the keys that
    differ from that run's config (``resume_config.check_resume_config`` refuses those a
    resumed run would not apply). None when there is no config to compare with."""
    if cfg.resume_from_checkpoint is not None:
        folder = os.path.dirname(os.path.abspath(cfg.resume_from_checkpoint))
    elif run.resumes(cfg.resume, cfg.auto_resume.enabled, cfg.auto_resume.max_hours):
        folder = run.partial
    else:
        return None
    if not RunDir.is_ours(folder):
        return None  # a file from elsewhere (a copy, solo-learn's run): no config to trust
    args_path = os.path.join(folder, "args.json")
    old = previous_config(args_path)
    if old is None:
        return None
    return check_resume_config(old, OmegaConf.to_container(cfg, resolve=True), args_path)


def _fit_kwargs(ckpt: Optional[str]) -> dict:
    kwargs = {"ckpt_path": ckpt}
    if ckpt is not None and "weights_only" in pl.Trainer.fit.__code__.co_varnames:
        kwargs["weights_only"] = True
    return kwargs


def pretrain(cfg: omegaconf.DictConfig, source: Any = None,
             callbacks: Optional[list] = None) -> str:
    """Runs the pretrain job; returns the path of the final checkpoint. ``callbacks`` are
    extra Lightning callbacks (benchmarks use them to time epochs)."""
    cfg, train = _prepare(cfg, source)
    verify_split(train, cfg.data, f"{cfg.data.dataset} train split at {cfg.data.train_path}")
    val = open_split(cfg.data, "test", verify=True, root=cfg.data.val_path) \
        if cfg.data.val_path else None
    if val is not None:
        require_labels(val, "the online linear probe (data.val_path is set)",
                       f"the {cfg.data.dataset} test split at {cfg.data.val_path}",
                       "; or leave data.val_path unset to pretrain without the probe")
    pl.seed_everything(cfg.seed, workers=True)

    model = build_method(cfg, sample_info=train.info)
    # the training images under the deterministic transform, for the passes that embed them
    deterministic = eval_transform(cfg)
    train_images = TransformedImages(train.dataset, deterministic)
    val_images = TransformedImages(val.dataset, deterministic) if val is not None else None
    if getattr(model, "embedding_dataset", False) is None:
        # the k-means embedding pass reuses the split read above (metadata read once)
        model.embedding_dataset = train_images
    if getattr(model, "knn_splits", False) is None:
        # the runtime's online kNN (knn_eval; solo-learn collects its features itself)
        model.knn_splits = {"train": (train_images, torch.as_tensor(train.info.labels)),
                            "val": (val_images, torch.as_tensor(val.info.labels))}
    # the epoch the workers' scheduled augmentations read (set by AugmentationClock); made
    # before the dataloader so that its workers share it
    clock = EpochClock() if cfg.warmup_augmentation_epochs else None
    # a method may wrap the training set itself (e.g. WCL's KNN multi-crop); default: index
    # wrapping with the augmentation pipelines of cfg.augmentations
    make_train_dataset = getattr(model, "make_train_dataset", None)
    if make_train_dataset is not None:
        train_set = make_train_dataset(train.dataset, pretrain_transform(cfg, clock),
                                       crops=crop_pipelines(cfg, clock))
    else:
        train_set = IndexedDataset(train.dataset, pretrain_transform(cfg, clock))
    workers = int(cfg.data.num_workers)
    if len(train_set) < cfg.optimizer.batch_size:
        raise ConfigError(f"optimizer.batch_size={cfg.optimizer.batch_size} is larger than the "
                          f"{len(train_set)} training images of {cfg.data.train_path}: lower it")
    options = loader_options(workers, cuda=uses_cuda(cfg.accelerator))
    train_loader = DataLoader(train_set, batch_size=cfg.optimizer.batch_size, shuffle=True,
                              drop_last=True, **options)
    val_loader = None
    if val is not None:
        val_loader = DataLoader(val_images, batch_size=cfg.optimizer.batch_size, **options)

    run = RunDir(cfg.checkpoint.dir, cfg.method, cfg.name)
    owner = _is_global_zero()
    if owner:
        # resuming an interrupted run is consent to clear the lock its dead process left
        run.acquire(break_lock=cfg.break_lock or cfg.resume or cfg.auto_resume.enabled)
    try:
        # before the run directory changes: a refused resume leaves everything as it was
        resumed = _resumed_config_changes(cfg, run) if owner else None
        ckpt = _resume_point(cfg, run, owner)
        print(f"[clinfonce] host={host.HOST_NAME} method={cfg.method} "
              f"backbone={cfg.backbone.name} run={run.partial}")
        if hasattr(model, "provider"):
            print(f"[clinfonce] clusters: {model.provider.describe()}")
        if owner:
            atomic_write_json(os.path.join(run.partial, "args.json"),
                              OmegaConf.to_container(cfg, resolve=True), indent=2, default=str)
            if ckpt is not None:
                state = safe_load(ckpt, "resume checkpoint")
                record_resume(run.partial, ckpt, int(state.get("epoch", -1)),
                              int(state.get("global_step", 0)), resumed or {})
        if clock is not None:
            callbacks = list(callbacks or []) + [AugmentationClock(clock)]
        if cfg.data.augment_on == "device":
            callbacks = list(callbacks or []) + [DeviceAugmentation.from_cfg(cfg)]
        return _fit(cfg, model, train_loader, val_loader, run, ckpt, callbacks, owner)
    finally:
        if owner:
            run.release()


def _fit(cfg, model, train_loader, val_loader, run: RunDir, ckpt: Optional[str],
         callbacks: Optional[list], owner: bool) -> str:
    accelerator = _accelerator(cfg)
    callbacks = list(callbacks or []) + [FiniteLoss(), RNGState(), ScheduleFromConfig(),
                                         BackboneOrigin(host.HOST_NAME, cfg.backbone.name),
                                         lr_monitor()]
    if cfg.checkpoint.enabled:
        callbacks.append(PeriodicCheckpoint(run.partial, cfg.checkpoint.frequency))
    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs,
        accelerator=accelerator,
        devices=_devices(cfg, accelerator),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy or "auto",
        precision=cfg.precision,
        sync_batchnorm=bool(cfg.sync_batchnorm) and accelerator != "cpu",
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        logger=build_loggers(cfg, run.partial, owner),
        callbacks=callbacks,
        enable_checkpointing=False,  # PeriodicCheckpoint writes last.ckpt
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        num_sanity_val_steps=cfg.num_sanity_val_steps,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.enable_progress_bar,
        deterministic=False,
    )
    _keep_metrics_on_resume(trainer, ckpt)
    watch(trainer, model)
    try:
        return _train_and_finish(cfg, model, train_loader, val_loader, run, ckpt, trainer)
    except Exception as err:
        # a full disk, or the run directory removed or replaced mid-run: say so, not which
        # file of it (a log, last.ckpt.tmp) happened to be written first
        failure = run.failure(err, f"at epoch {trainer.current_epoch}, step "
                              f"{trainer.global_step}") if owner else None
        if failure is None:
            raise
        raise failure from err


def _train_and_finish(cfg, model, train_loader, val_loader, run: RunDir, ckpt: Optional[str],
                      trainer: pl.Trainer) -> str:
    try:
        with lightning_noise_filtered():
            trainer.fit(model, train_loader, val_loader, **_fit_kwargs(ckpt))
    except SystemExit:
        # Lightning >= 2.2 turns Ctrl-C into sys.exit(1) after its shutdown
        if not trainer.interrupted:
            raise
    if trainer.interrupted:  # older Lightning returns from fit instead
        last = run.last_checkpoint
        where = (f"its last checkpoint is {last}; continue with resume=true"
                 if os.path.isfile(last) else "no checkpoint was written yet")
        raise Interrupted(f"interrupted at epoch {trainer.current_epoch}, step "
                          f"{trainer.global_step}: {where}")

    final = os.path.join(run.partial, f"{cfg.name}.ckpt")
    with lightning_noise_filtered():
        trainer.save_checkpoint(final)
    finish_loggers(trainer)
    if trainer.is_global_zero:
        run.finish()
    trainer.strategy.barrier("clinfonce.finish")
    path = os.path.join(run.final, f"{cfg.name}.ckpt")
    print(f"[clinfonce] checkpoint: {path}")
    return path


def _keep_metrics_on_resume(trainer: pl.Trainer, ckpt: Optional[str]) -> None:
    """Lightning's CSV writer deletes an existing metrics.csv when it starts. On resume the
    rows the checkpoint covers are kept and the writer appends to them: rows of its epochs,
    and rows without an epoch (the learning-rate monitor's) of the steps before its
    global step. Rows of a lost partial epoch after it are dropped (that epoch is trained
    again). TensorBoard and wandb keep their own files: a resumed run adds an events file
    and continues the same wandb run."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
    if ckpt is None or logger is None or not trainer.is_global_zero:
        return
    path = os.path.join(logger.log_dir, "metrics.csv")
    if not os.path.isfile(path):
        return
    state = safe_load(ckpt, "resume checkpoint")
    last_epoch, next_step = int(state.get("epoch", -1)), int(state.get("global_step", 0))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = sorted(reader.fieldnames or [])  # the writer's own (sorted) column order
        rows = [r for r in reader if (float(r["epoch"]) <= last_epoch if r.get("epoch")
                                      else int(float(r.get("step") or 0)) < next_step)]
    # Lightning's writer warns about a directory it finds not empty and removes its
    # metrics.csv: it starts on an empty one while the old files wait beside it
    log_dir = os.path.normpath(logger.log_dir)
    aside = log_dir + ".resume"
    os.replace(log_dir, aside)
    writer = logger.experiment
    for name in os.listdir(aside):
        if name != "metrics.csv":  # e.g. hparams.yaml
            os.replace(os.path.join(aside, name), os.path.join(log_dir, name))
    with atomic_open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=header)
        out.writeheader()
        out.writerows(rows)
    os.remove(os.path.join(aside, "metrics.csv"))  # its rows are in the new one
    os.rmdir(aside)
    writer.metrics_keys = header
