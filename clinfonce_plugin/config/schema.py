"""Every key of the pretrain, linear, fine-tune, kNN and plot configs with its default, kind,
range and meaning: one table per config level (docs/configuration.md lists the same keys).

Method kwargs and cluster-provider parameters use the same ``Key`` tables (declared next to
the method or provider)."""
import re
from typing import Any, Dict

from ..utils.markers import REQUIRED
from .keys import Key, Unsupported

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

# data keys of linear and kNN evaluation (unset: the pretrain run's, see evaluate/pretrained.py)
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
