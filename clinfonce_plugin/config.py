"""The one config module: every key of the pretrain and linear configs with its default,
type and range; the checks run before any training starts; errors that name the key and
where it was set (yaml file and line, or the command line).

Method kwargs and cluster-provider parameters use the same ``Key`` tables (declared next to
the method or provider) and the same ``fill_section``.
"""
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from .errors import ConfigError
from .markers import REQUIRED

__all__ = ["REQUIRED", "Key", "ConfigError", "Sources", "fill_section", "check_known_keys",
           "check_pretrain_cfg", "check_linear_cfg", "check_knn_cfg", "check_plot_cfg", "select",
           "fill_defaults", "as_keys", "validate_run_name", "documented_keys", "PRETRAIN",
           "LINEAR", "KNN", "KNN_FEATURE_TYPES", "PLOT", "AUGMENTATION", "LINEAR_PRESETS",
           "FINETUNE", "check_finetune_cfg", "linear_preset", "AUTO_WORKERS_CAP",
           "available_cores", "auto_num_workers", "processes_per_machine", "check_choice"]




@dataclass(frozen=True)
class Key:
    """One config key: default (``REQUIRED`` if none), accepted kinds, range and meaning.

    ``kind``: any of "int", "float", "bool", "str", "list", "dict", "any"; a "|"-separated
    string accepts several. ``low``/``high`` bound numbers (``low_open``: strictly above).
    """
    default: Any
    kind: str
    doc: str = ""
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    choices: Optional[Tuple[Any, ...]] = None
    fill: bool = True  # False: an unset key stays absent (the host picks a default)


@dataclass(frozen=True)
class Unsupported:
    """A solo-learn key this runner does not act on: accepted (and dropped) only at its
    neutral value, where it would change nothing; ``None`` accepts a section whose
    ``enabled`` is false."""
    neutral: Any
    instead: str

    def is_neutral(self, value: Any) -> bool:
        if self.neutral is None:
            return value is None or (isinstance(value, Mapping) and value.get("enabled") is False)
        return value == self.neutral


# --------------------------------------------------------------------------- tables
AUTO_WORKERS_CAP = 8  # data.num_workers=auto starts at most this many workers per process

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

PRETRAIN: Dict[str, Any] = {
    "name": Key(None, "str", "run name (one path component: letters, digits, . _ -); "
                "default <method>-<dataset>"),
    "method": Key(REQUIRED, "str", "registered method name"),
    "seed": Key(5, "int", "global seed", low=0),
    "max_epochs": Key(100, "int", "training epochs", low=1),
    "devices": Key(1, "int|list|str", "device count or list of device ids"),
    "accelerator": Key("auto", "str", "Lightning accelerator",
                       choices=("auto", "cpu", "gpu", "cuda", "mps", "tpu")),
    "strategy": Key(None, "str", "Lightning strategy, e.g. ddp"),
    "precision": Key("32-true", "str|int", "Lightning precision, e.g. 16-mixed, bf16-mixed"),
    "num_nodes": Key(1, "int", "machines", low=1),
    "sync_batchnorm": Key(False, "bool", "SyncBatchNorm across ranks (not on the CPU)"),
    "accumulate_grad_batches": Key(1, "int", "gradient accumulation steps", low=1),
    "resume": Key(False, "bool", "continue the interrupted run of this name from its last "
                  "checkpoint (an error if there is none)"),
    "resume_from_checkpoint": Key(None, "str", "continue from this checkpoint file"),
    "overwrite": Key(False, "bool", "replace a finished run of this name (the old one is "
                     "renamed to <name>.replaced-<time>, never deleted)"),
    "break_lock": Key(False, "bool", "remove the lock of a run whose process is dead, or "
                      "a lock that cannot be read (resume=true does it too)"),
    "limit_train_batches": Key(1.0, "int|float", "Lightning: batches (int) or fraction per "
                               "epoch", low=0, low_open=True),
    "limit_val_batches": Key(1.0, "int|float", "Lightning: validation batches or fraction",
                             low=0),
    "log_every_n_steps": Key(10, "int", "Lightning logging interval", low=1),
    "num_sanity_val_steps": Key(0, "int", "Lightning sanity validation steps", low=0),
    "enable_progress_bar": Key(True, "bool", "Lightning progress bar"),
    "channels_last": Key(False, "bool", "model weights and input batches in channels-last "
                         "memory format (faster convolutions on GPUs with tensor cores, "
                         "usually with 16-mixed / bf16-mixed precision)"),
    "backbone": {
        "name": Key(REQUIRED, "str", "backbone (host table or timm name)"),
        "kwargs": Key({}, "dict", "backbone constructor arguments"),
        "cifar_stem": Key(False, "bool", "3x3 stride-1 stem without max-pool on a non-CIFAR "
                          "dataset (CIFAR datasets always get it)"),
        "pretrained": Key(None, "str", "checkpoint (path or zoo:<name>) whose backbone "
                          "weights initialise the run"),
    },
    "data": {
        "dataset": Key(REQUIRED, "str", "registered dataset name"),
        "train_path": Key(REQUIRED, "str", "dataset root (official layout)"),
        "val_path": Key(None, "str", "root for online validation (test split)"),
        "augment_on": Key("cpu", "str", "where the random augmentations run: cpu (the "
                          "data-loader workers) or device (batched on the model's device; the "
                          "workers only decode and crop)", choices=("cpu", "device")),
        "num_workers": Key("auto", "int|str", "data-loader workers per process; auto: the "
                           "cores this process may use (os.sched_getaffinity) divided by the "
                           f"devices of the machine, at least 1, at most {AUTO_WORKERS_CAP}",
                           low=0),
        "no_labels": Key(False, "bool", "solo-learn's key; labels are used when the dataset "
                         "has them"),
        "verify_images": Key("auto", "bool|str", "check every image file before training "
                             "(auto: when the split has fewer than 100,000 images)"),
        "generate": Key(False, "bool", "synthetic_cub and synthetic_cub_bench only: generate the "
                        "dataset at a train_path other than the default"),
        "annotations": Key(None, "str", "custom only: CSV with a path column and optional "
                           "label, split and attribute columns"),
        "class_list": Key(None, "str", "imagenet100 (required) and imagenet (optional: every class folder): file of the "
                          "class wnids, whitespace separated"),
        "split_seed": Key(0, "int", "utzappos only: seed of the random 7:3 train/test split",
                          low=0),
        "num_classes": Key(None, "int", "derived from the dataset", low=1),
        "num_large_crops": Key(None, "int", "derived from augmentations", low=0),
        "num_small_crops": Key(None, "int", "derived from augmentations", low=0),
    },
    "optimizer": {
        "name": Key(REQUIRED, "str", "sgd | lars | adam | adamw"),
        "batch_size": Key(REQUIRED, "int", "batch size per device, at least 2 (BatchNorm "
                          "needs two samples, a contrastive batch its negatives)", low=2),
        "lr": Key(REQUIRED, "float", "base lr, scaled by batch_size * devices / 256", low=0,
                  low_open=True),
        "classifier_lr": Key(0.1, "float", "online linear probe lr", low=0),
        "weight_decay": Key(0.0, "float", "weight decay", low=0),
        "kwargs": Key({}, "dict", "optimizer arguments (momentum, eta, betas, ...)"),
        "exclude_bias_n_norm_wd": Key(False, "bool", "no weight decay on biases and norms"),
    },
    "scheduler": {
        "name": Key("warmup_cosine", "str", "warmup_cosine | step | none"),
        "warmup_epochs": Key(10, "int|float", "linear warm-up epochs", low=0),
        "warmup_start_lr": Key(3e-5, "float", "lr at the start of warm-up", low=0),
        "min_lr": Key(0.0, "float", "final lr of the cosine", low=0),
        "interval": Key("step", "str", "schedule per step or per epoch",
                        choices=("step", "epoch")),
        "lr_decay_steps": Key(None, "list", "epochs of the step schedule"),
    },
    "checkpoint": {
        "enabled": Key(True, "bool", "write last.ckpt during training"),
        "dir": Key("trained_models", "str", "root of run directories"),
        "frequency": Key(1, "int", "write last.ckpt every this many epochs", low=1),
    },
    "auto_resume": {
        "enabled": Key(False, "bool", "solo-learn's key: resume the interrupted run of this "
                       "name when there is one, else start"),
        "max_hours": Key(36, "int|float", "only resume a checkpoint younger than this", low=0),
    },
    "wandb": {
        "enabled": Key(False, "bool", "also log to Weights & Biases (the loggers extra)"),
        "entity": Key(None, "str", "wandb entity (user or team)"),
        "project": Key("solo-learn", "str", "wandb project"),
        "offline": Key(False, "bool", "write the wandb run to wandb/ in the run directory "
                       "only (no network); wandb sync uploads it later"),
    },
    "tensorboard": {
        "enabled": Key(False, "bool", "also log to TensorBoard, in tensorboard/ in the run "
                       "directory (the loggers extra)"),
    },
    "knn_eval": {
        "enabled": Key(False, "bool", "solo-learn's online kNN: val_knn_acc1 / val_knn_acc5 "
                       "logged every validation epoch (needs data.val_path)"),
        "k": Key(20, "int", "neighbours of the online kNN", low=1),
        "distance_func": Key("euclidean", "str", "cosine or euclidean"),
    },
    # solo-learn's section of its momentum methods (BaseMomentumMethod), with its defaults;
    # only a method with a momentum encoder takes it (see check_pretrain_cfg)
    "momentum": {
        "base_tau": Key(0.99, "float", "EMA coefficient of the momentum encoder at the first "
                        "step", low=0, high=1),
        "final_tau": Key(1.0, "float", "EMA coefficient at the last step (cosine increase "
                         "from base_tau)", low=0, high=1),
        "classifier": Key(False, "bool", "solo-learn only: an online linear probe on the "
                          "momentum backbone too"),
    },
    "method_kwargs": Key({}, "dict", "the method's own keys (see docs/configuration.md)"),
    "augmentations": Key(REQUIRED, "list", "list of crop pipelines"),
    "warmup_augmentations": Key(None, "list", "crop pipelines used instead of augmentations "
                                "while epoch < warmup_augmentation_epochs; the same entries' "
                                "crop_size and num_crops as augmentations"),
    "warmup_augmentation_epochs": Key(0, "int", "epochs trained with warmup_augmentations "
                                      "(0: none)", low=0),
}

# solo-learn keys the runner does not act on: refused unless at their neutral value
UNSUPPORTED: Dict[str, Unsupported] = {
    "dali": Unsupported(None, "remove it: DALI pipelines are not supported (CUDA only)"),
    "auto_umap": Unsupported(None, "remove it: UMAP plots are not produced"),
    "performance": Unsupported(None, "remove it: channels_last (true / false, default "
                               "false) sets the memory format"),
    "debug_augmentations": Unsupported(False, "remove it"),
    "data.format": Unsupported("image_folder", "remove it: data.dataset picks the reader of "
                               "the dataset's official layout"),
    "data.fraction": Unsupported(-1, "remove it: the whole training split is used"),
    "checkpoint.keep_prev": Unsupported(False, "remove it: one last.ckpt is kept, replaced "
                                        "atomically"),
}

AUGMENTATION: Dict[str, Any] = {
    "crop_size": Key(REQUIRED, "int", "output size in pixels", low=1),
    "num_crops": Key(REQUIRED, "int", "crops of this pipeline", low=1),
    "mean": Key(None, "list", "normalisation mean (default: the host's for the dataset)",
                fill=False),
    "std": Key(None, "list", "normalisation std (default: the host's for the dataset)",
               fill=False),
    "rrc": {
        "enabled": Key(True, "bool", "random resized crop (else resize)"),
        "crop_min_scale": Key(0.08, "float", "smallest area fraction", low=0, high=1),
        "crop_max_scale": Key(1.0, "float", "largest area fraction", low=0, high=1),
    },
    "color_jitter": {
        "prob": Key(0.0, "float", "probability", low=0, high=1),
        "brightness": Key(0.0, "float", "jitter strength", low=0),
        "contrast": Key(0.0, "float", "jitter strength", low=0),
        "saturation": Key(0.0, "float", "jitter strength", low=0),
        "hue": Key(0.0, "float", "jitter strength", low=0, high=0.5),
    },
    "grayscale": {"prob": Key(0.0, "float", "probability", low=0, high=1)},
    "gaussian_blur": {"prob": Key(0.0, "float", "probability", low=0, high=1)},
    "solarization": {"prob": Key(0.0, "float", "probability", low=0, high=1)},
    "equalization": {"prob": Key(0.0, "float", "probability", low=0, high=1)},
    "horizontal_flip": {"prob": Key(0.0, "float", "probability", low=0, high=1)},
}

# data keys of linear and kNN evaluation (unset: the pretrain run's, see linear.py)
EVAL_DATA: Dict[str, Any] = {
    "dataset": Key(None, "str", "default: the pretrain run's"),
    "train_path": Key(None, "str", "default: the pretrain run's"),
    "val_path": Key(None, "str", "default: the pretrain run's"),
    "annotations": Key(None, "str", "default: the pretrain run's"),
    "class_list": Key(None, "str", "default: the pretrain run's"),
    "split_seed": Key(None, "int", "default: the pretrain run's", low=0),
    "num_workers": Key("auto", "int|str", "data-loader workers; auto: the cores this "
                       f"process may use (os.sched_getaffinity), at least 1, at most "
                       f"{AUTO_WORKERS_CAP}", low=0),
    "verify_images": Key("auto", "bool|str", "as in pretraining"),
}

EVAL_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")

LINEAR: Dict[str, Any] = {
    "name": Key(None, "str", "result name (default linear-<pretrain name>)"),
    "pretrained": Key(REQUIRED, "str", "checkpoint path, or zoo:<name>"),
    "protocol": Key("features", "str", "features: a classifier on features extracted once; "
                    "paper: frozen backbone, random-resized crop + flip each epoch",
                    choices=("features", "paper")),
    "paper_preset": Key("auto", "str", "protocol=paper: the paper whose settings fill the "
                        "unset keys (auto: wcl for a wcl checkpoint, else clinfonce)",
                        choices=("auto", "clinfonce", "wcl")),
    "seed": Key(5, "int", "global seed", low=0),
    "max_epochs": Key(None, "int", "epochs of the linear classifier (unset: the preset's)",
                      low=1),
    "crop_min_scale": Key(None, "float", "protocol=paper: smallest area fraction of the "
                          "random-resized crop (unset: the preset's)", low=0, high=1,
                          low_open=True),
    "accelerator": Key("auto", "str", "auto: CUDA when present, else the CPU",
                       choices=EVAL_ACCELERATORS),
    "devices": Key(1, "int", "devices", low=1, high=1),
    "feature_batch_size": Key(256, "int", "batch size of the forward-only passes (features, "
                              "test)", low=1),
    "compare_zoo": Key([], "list", "zoo entries evaluated the same way on the same data and "
                       "printed beside this result, with kNN top-1"),
    "enable_progress_bar": Key(True, "bool", "Lightning progress bar"),
    "output_dir": Key(None, "str", "where results go (default: beside the checkpoint; "
                      "trained_models/zoo for zoo:<name>)"),
    "data": EVAL_DATA,
    "optimizer": {
        "name": Key("sgd", "str", "sgd | adamw", choices=("sgd", "adamw")),
        "lr": Key(None, "float", "learning rate (unset: the preset's)", low=0, low_open=True),
        "scale_lr": Key(None, "bool", "multiply lr by batch_size / 256 (unset: the preset's)"),
        "batch_size": Key(None, "int", "batch size (unset: the preset's)", low=1),
        "weight_decay": Key(None, "float", "weight decay (unset: the preset's)", low=0),
        "momentum": Key(None, "float", "SGD momentum (unset: the preset's)", low=0, high=1),
        "nesterov": Key(None, "bool", "SGD Nesterov momentum (unset: the preset's)"),
    },
    "scheduler": {
        "interval": Key(None, "str", "cosine lr evaluated per epoch or per step (unset: the "
                        "preset's)", choices=("epoch", "step")),
        "min_lr_ratio": Key(None, "float", "final lr of the cosine / lr (unset: the preset's)",
                            low=0, high=1),
    },
}

# The values a linear evaluation takes for the keys it leaves unset: ``features`` for
# protocol=features (the fast probe), a paper's for protocol=paper. Sources: Cl-InfoNCE's
# official linear script (Crazy-Jack/Cl-InfoNCE script/run_eval.sh: lr 0.3, batch 128, 100
# epochs, cosine; clinfonce/util.py: SGD momentum 0.95, Nesterov, weight decay 1e-4, cosine
# per epoch down to lr x 0.1**3; data_utils.py: crop scale (0.4, 1)); WCL Sec. 4.1
# 'Evaluation Protocol' (80 epochs, SGD momentum 0.9, lr 0.1 x batch/256, cosine, no weight
# decay) with its official linear_eval.py (Nesterov, cosine per step to 0, torchvision's
# crop scale (0.08, 1)).
LINEAR_PRESETS: Dict[str, Dict[str, Any]] = {
    "features": {
        "max_epochs": 100, "crop_min_scale": None,
        "optimizer": {"lr": 0.1, "scale_lr": False, "batch_size": 256, "weight_decay": 0.0,
                      "momentum": 0.9, "nesterov": False},
        "scheduler": {"interval": "epoch", "min_lr_ratio": 0.0},
    },
    "clinfonce": {
        "max_epochs": 100, "crop_min_scale": 0.4,
        "optimizer": {"lr": 0.3, "scale_lr": False, "batch_size": 128, "weight_decay": 1e-4,
                      "momentum": 0.95, "nesterov": True},
        "scheduler": {"interval": "epoch", "min_lr_ratio": 0.001},
    },
    "wcl": {
        "max_epochs": 80, "crop_min_scale": 0.08,
        "optimizer": {"lr": 0.1, "scale_lr": True, "batch_size": 256, "weight_decay": 0.0,
                      "momentum": 0.9, "nesterov": True},
        "scheduler": {"interval": "step", "min_lr_ratio": 0.0},
    },
}

FINETUNE: Dict[str, Any] = {
    "name": Key(None, "str", "result name (default finetune-<pretrain name>)"),
    "pretrained": Key(REQUIRED, "str", "checkpoint path, or zoo:<name>"),
    "label_fraction": Key(None, "float", "fraction of each class's training images that keep "
                          "their label (give this or subset_file)", low=0, high=1,
                          low_open=True),
    "subset_seed": Key(0, "int", "seed of the per-class draw of label_fraction", low=0),
    "subset_file": Key(None, "str", "file of the labelled training images, one per line "
                       "(give this or label_fraction)"),
    "seed": Key(5, "int", "global seed", low=0),
    "max_epochs": Key(20, "int", "fine-tuning epochs", low=1),
    "crop_min_scale": Key(0.08, "float", "smallest area fraction of the random-resized crop",
                          low=0, high=1, low_open=True),
    "accelerator": Key("auto", "str", "auto: CUDA when present, else the CPU",
                       choices=EVAL_ACCELERATORS),
    "devices": Key(1, "int", "devices", low=1, high=1),
    "test_batch_size": Key(256, "int", "batch size of the test pass", low=1),
    "save_weights": Key(True, "bool", "write the fine-tuned backbone and head to "
                        "<output_dir>/<name>.pt"),
    "enable_progress_bar": Key(True, "bool", "Lightning progress bar"),
    "output_dir": Key(None, "str", "where results go (default: beside the checkpoint)"),
    "data": EVAL_DATA,
    "optimizer": {
        "name": Key("sgd", "str", "sgd | adamw", choices=("sgd", "adamw")),
        "lr": Key(0.01, "float", "learning rate of the backbone", low=0, low_open=True),
        "head_lr": Key(0.2, "float", "learning rate of the linear head", low=0, low_open=True),
        "scale_lr": Key(False, "bool", "multiply both lrs by batch_size / 256"),
        "batch_size": Key(256, "int", "batch size", low=1),
        "weight_decay": Key(0.0, "float", "weight decay", low=0),
        "momentum": Key(0.9, "float", "SGD momentum", low=0, high=1),
        "nesterov": Key(False, "bool", "SGD Nesterov momentum"),
    },
    "scheduler": {
        "name": Key("step", "str", "step: lr x gamma at each of lr_decay_steps; cosine",
                    choices=("step", "cosine")),
        "lr_decay_steps": Key([12, 16], "list", "step: epochs at which the lr is multiplied "
                              "by gamma"),
        "gamma": Key(0.2, "float", "step: lr factor", low=0, low_open=True, high=1),
        "interval": Key("epoch", "str", "cosine: evaluated per epoch or per step",
                        choices=("epoch", "step")),
        "min_lr_ratio": Key(0.0, "float", "cosine: final lr / lr", low=0, high=1),
    },
}

# what main_knn.py evaluates (solo-learn's main_knn --feature_type)
KNN_FEATURE_TYPES = ("backbone", "projector")
CLUSTERING_SPLITS = ("train", "test", "all")

KNN: Dict[str, Any] = {
    "name": Key(None, "str", "result name (default knn-<pretrain name>)"),
    "pretrained": Key(REQUIRED, "str", "checkpoint path, or zoo:<name>"),
    "feature_type": Key(list(KNN_FEATURE_TYPES), "list", "features evaluated: backbone "
                        "and/or projector (the method's projector on the backbone features)"),
    "k": Key([10, 20, 50, 100, 200], "list", "numbers of neighbours (each clipped to the "
             "number of training samples)"),
    "distance_function": Key(["cosine", "euclidean"], "list", "cosine and/or euclidean"),
    "temperature": Key(0.07, "float", "cosine vote weight exp(similarity / temperature)",
                       low=0, low_open=True),
    "feature_batch_size": Key(256, "int", "batch size of the feature pass", low=1),
    "max_matrix_elements": Key(5_000_000, "int", "elements of one test-chunk x train "
                               "similarity matrix", low=1),
    "output_dir": Key(None, "str", "where results go (default: beside the checkpoint; "
                      "trained_models/zoo for zoo:<name>)"),
    "clustering": {
        "enabled": Key(True, "bool", "k-means of the features scored by NMI and clustering "
                       "accuracy against the labels"),
        "k": Key(None, "int", "clusters (default: the number of classes)", low=1),
        "split": Key("train", "str", "features clustered: train, test or all (both)",
                     choices=CLUSTERING_SPLITS),
        "seed": Key(0, "int", "faiss k-means seed", low=0),
        "nredo": Key(10, "int", "k-means runs from different initial points, the best "
                     "objective kept", low=1),
        "iterations": Key(20, "int", "k-means iterations", low=1),
    },
    "data": EVAL_DATA,
}

PLOT: Dict[str, Any] = {
    "name": Key(None, "str", "file name stem (default tsne-<pretrain name>-<split>)"),
    "pretrained": Key(REQUIRED, "str", "checkpoint path, or zoo:<name>"),
    "split": Key("train", "str", "the split whose images are drawn", choices=("train", "test")),
    "classes": Key(None, "int", "draw only this many classes, picked at random with seed "
                   "(WCL Fig. 4: 10); unset: every class", low=1),
    "max_points": Key(1000, "int", "at most this many images, a subsample stratified by "
                      "label (seeded)", low=3),
    "perplexity": Key(30.0, "float", "t-SNE perplexity (lowered below the number of images)",
                      low=0, low_open=True),
    "seed": Key(0, "int", "seed of the class pick, the subsample and t-SNE", low=0,
                high=2**32 - 1),
    "feature_batch_size": Key(256, "int", "batch size of the feature pass", low=1),
    "overwrite": Key(False, "bool", "replace existing pictures (the old files are renamed to "
                     "<file>.replaced-<time>, never deleted)"),
    "output_dir": Key(None, "str", "where the pictures go (default: beside the checkpoint; "
                      "for zoo:<name>, the current directory)"),
    "data": EVAL_DATA,
}

HYDRA_KEYS = ("defaults", "hydra")


def documented_keys(table: Mapping[str, Any], prefix: str = "") -> Dict[str, Key]:
    """Flat {dotted key: Key} of a table (nested sections expanded)."""
    out: Dict[str, Key] = {}
    for name, spec in table.items():
        if isinstance(spec, Mapping):
            out.update(documented_keys(spec, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec
    return out


# --------------------------------------------------------------------------- locations
@dataclass
class Sources:
    """Where a config came from: the primary yaml, the yaml of each defaults group, and the
    command-line overrides. ``where(path)`` finds the file:line of a dotted key."""
    primary: Optional[str] = None
    groups: Dict[str, str] = field(default_factory=dict)  # package -> yaml file
    overrides: Sequence[str] = ()
    label: str = "<config>"  # where a key is said to be when no file or override has it

    @staticmethod
    def of(source: Any) -> "Sources":
        if isinstance(source, Sources):
            return source
        return Sources(primary=source)

    def where(self, path: str) -> str:
        parts = _split_path(path)
        # the last override of a key given twice is the one that took effect
        for override in reversed(self.overrides):
            key = override.split("=", 1)[0].lstrip("+~")
            if _split_path(key) == parts[: len(_split_path(key))]:
                return f"command line ({override})"
        in_files = any(_yaml_line(file, parts[len(_split_path(package)):])
                       for package, file in self.groups.items()
                       if parts[: len(_split_path(package))] == _split_path(package))
        in_files = in_files or bool(self.primary and _yaml_line(self.primary, parts))
        if not in_files:
            # a section no file has, made by an override of a key below it (foo.bar=1)
            for override in reversed(self.overrides):
                key = _split_path(override.split("=", 1)[0].lstrip("+~"))
                if key[: len(parts)] == parts:
                    return f"command line ({override})"
        for package, file in self.groups.items():
            pkg = _split_path(package)
            if parts[: len(pkg)] == pkg:
                line = _yaml_line(file, parts[len(pkg):])
                if line:
                    return f"{file}:{line}"
        if self.primary:
            line = _yaml_line(self.primary, parts)
            return f"{self.primary}:{line}" if line else self.primary
        return self.label


def _split_path(path: str) -> List[Any]:
    parts: List[Any] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return parts


def _yaml_line(file: str, parts: List[Any]) -> Optional[int]:
    """1-based line of the deepest node of ``parts`` found in the yaml ``file``."""
    try:
        with open(file, encoding="utf-8-sig") as f:
            node = yaml.compose(f)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = [(k, v) for k, v in node.value if k.value == part]
            if not match:
                return line
            key_node, node = match[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _error(sources: Sources, path: str, message: str) -> ConfigError:
    return ConfigError(f"{sources.where(path)}: {path}: {message}")


# --------------------------------------------------------------------------- checks
_KINDS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, (list, tuple, ListConfig)),
    "dict": lambda v: isinstance(v, (dict, DictConfig)),
    "any": lambda v: True,
}
_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false",
               "str": "a string", "list": "a list", "dict": "a mapping", "any": "a value"}


def _check_value(spec: Key, value: Any) -> Optional[str]:
    """None if ``value`` fits ``spec``, else what was expected."""
    kinds = spec.kind.split("|")
    if not any(_KINDS[k](value) for k in kinds):
        return f"expected {' or '.join(_KIND_WORDS[k] for k in kinds)}, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"expected one of {list(spec.choices)}, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
            return f"expected a value {'>' if spec.low_open else '>='} {spec.low}, got {value!r}"
        if spec.high is not None and value > spec.high:
            return f"expected a value <= {spec.high}, got {value!r}"
    return None


def check_known_keys(node: Any, allowed: Iterable[str], where: str) -> None:
    """Raises ConfigError if ``node`` (a mapping) has a key outside ``allowed``."""
    if node is None:
        return
    if not isinstance(node, (Mapping, DictConfig)):
        raise ConfigError(f"{where} must be a mapping, got {type(node).__name__}: {node!r}")
    unknown = sorted(set(node.keys()) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}. Valid keys: {sorted(allowed)}")


def fill_section(cfg: DictConfig, path: str, table: Mapping[str, Any],
                 sources: Any = None, unsupported: Mapping[str, Unsupported] = None,
                 ignore: Sequence[str] = ()) -> DictConfig:
    """Checks the mapping at dotted ``path`` of ``cfg`` against ``table`` (unknown keys,
    required keys, kinds, ranges, choices, recursively) and fills the defaults.

    ``unsupported`` maps dotted keys (relative to ``path``) to keys accepted only at their
    neutral value. Returns the node. Raises ConfigError naming the key and its location.
    """
    sources = Sources.of(sources)
    unsupported = unsupported or {}
    node = OmegaConf.select(cfg, path) if path else cfg
    if node is None:
        with open_dict(cfg):
            OmegaConf.update(cfg, path, {}, force_add=True)
        node = OmegaConf.select(cfg, path)
    _fill(node, path, table, sources, unsupported, "", ignore)
    return node


def _fill(node, path, table, sources, unsupported, rel, ignore) -> None:
    full = (lambda k: f"{path}.{k}" if path else k)
    if not isinstance(node, DictConfig):
        raise _error(sources, path, f"expected a mapping, got {node!r}")
    for key in list(node.keys()):
        rel_key = f"{rel}{key}"
        if key in table or key in ignore:
            continue
        if rel_key in unsupported:
            bad = unsupported[rel_key]
            value = node[key]
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            if not bad.is_neutral(value):
                raise _error(sources, full(key), f"not supported by this runner: "
                             f"{bad.instead}")
            with open_dict(node):
                del node[key]
            continue
        valid = sorted(set(table) | {k[len(rel):] for k in unsupported
                                     if k.startswith(rel) and "." not in k[len(rel):]})
        raise _error(sources, full(key), f"unknown key. Valid keys here: {valid}")
    with open_dict(node):
        for key, spec in table.items():
            if isinstance(spec, Mapping):
                if key not in node or node[key] is None:
                    node[key] = {}
                _fill(node[key], full(key), spec, sources, unsupported, f"{rel}{key}.", ())
                continue
            present = key in node and not OmegaConf.is_missing(node, key) and node[key] is not None
            if not present:
                if spec.default is REQUIRED:
                    raise _error(sources, full(key), "required key is missing")
                if spec.fill:
                    node[key] = spec.default
                elif key in node:
                    del node[key]  # an explicit null: the host's default, as when absent
                continue
            value = node[key]
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            problem = _check_value(spec, value)
            if problem:
                raise _error(sources, full(key), problem)


def _infer_kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (dict, DictConfig)):
        return "dict"
    if isinstance(default, (list, tuple, ListConfig)):
        return "list"
    return "any"


def as_keys(defaults: Mapping[str, Any]) -> Dict[str, Key]:
    """A Key table from plain ``{key: default}`` (kind inferred from the default; a default
    of REQUIRED or None accepts any value). Keys already given as ``Key`` are kept."""
    table: Dict[str, Key] = {}
    for key, default in defaults.items():
        if isinstance(default, Key):
            table[key] = default
        elif default is REQUIRED or default == "???":
            table[key] = Key(REQUIRED, "any")
        else:
            table[key] = Key(default, _infer_kind(default))
    return table


def fill_defaults(cfg: DictConfig, path: str, defaults: Mapping[str, Any],
                  sources: Any = None) -> DictConfig:
    """``fill_section`` with a plain ``{key: default}`` table (method kwargs)."""
    return fill_section(cfg, path, as_keys(defaults), sources)


def select(cfg: DictConfig, key: str, default: Any = None) -> Any:
    """Value at dotted ``key``, or ``default`` when absent, None or ``???``."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if value is None or value == "???":
        return default
    return value


def check_choice(cfg: DictConfig, key: str, choices: Sequence[str], what: str, of: str = "",
                 source: Any = None) -> None:
    """Raises ConfigError (with the key's location) if the value at dotted ``key`` is not
    one of ``choices`` (``what`` names the value, ``of`` whose choices they are)."""
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        raise _error(Sources.of(source), key, f"unknown {what} {value!r}. Choose from "
                     f"{of + ' ' if of else ''}{list(choices)}")


def validate_run_name(name: Any, where: str = "name") -> str:
    """A run name is one path component of safe characters (it becomes a directory)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name in (".", ".."):
        raise ConfigError(f"{where}: {name!r} is not a valid run name: use 1-128 letters, "
                          f"digits, '.', '_' or '-', starting with a letter or digit (it names "
                          f"a directory under checkpoint.dir/<method>/)")
    return name


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
    from .metrics.knn import DISTANCES

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
    from .metrics.knn import DISTANCES

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
