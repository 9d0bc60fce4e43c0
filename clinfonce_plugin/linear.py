"""Linear evaluation of a frozen pretrained backbone, top-1/top-5 on the test split written as
JSON. Two protocols (``protocol``):

- ``features``: features of the train/test splits extracted once (deterministic resize +
  centre crop), standardised with the train statistics, a linear classifier trained on them;
- ``paper``: the papers' protocol: every epoch the training images go through a fresh
  random-resized crop + horizontal flip and the frozen backbone (eval mode, no gradient),
  the classifier sees raw backbone features; the test split is centre-cropped.

Both run the backbone on the accelerator when there is one; unset optimisation keys come
from ``config.LINEAR_PRESETS``.
"""
from typing import Optional

import lightning.pytorch as pl
import omegaconf
import torch
import torch.nn as nn
from omegaconf import OmegaConf, open_dict
from torch.utils.data import DataLoader, TensorDataset

from .checkpoints import check_finite, fit_keys, pretrain_args, safe_load, state_dict_of
from .classifier import Classifier, StandardizedLinear
from .compare import compare, format_rows
from .config import EVAL_DATA, check_linear_cfg, linear_preset
from .data.registry import DATASETS, open_split, require_labels
from .data.indexed import TransformedImages
from .data.transforms import eval_transform
from .errors import CheckpointError, ConfigError
from .evaluation import crop_loaders, fit_and_test, optimization, output_place, write_results
from .host.backbone import make_backbone
from .utils.devices import eval_device
from .utils.loading import loader_options, to_device
from .zoo import resolve_pretrained


def load_pretrained_backbone(ckpt_path: str):
    """Backbone rebuilt from the pretrain config (``args.json`` beside the checkpoint, or the
    config a zoo file carries), weights from ``backbone.*`` (loaded weights-only: no code in
    the file runs; non-finite weights are refused)."""
    obj = safe_load(ckpt_path, "pretrained checkpoint")
    pre_cfg = OmegaConf.create(pretrain_args(ckpt_path, obj))
    state = state_dict_of(obj, ckpt_path)
    weights = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not weights:
        raise CheckpointError(f"{ckpt_path} has no 'backbone.*' weights in its state_dict")
    check_finite(weights, ckpt_path)
    backbone, dim = make_backbone(pre_cfg)
    # a checkpoint of the other host names the same network's tensors differently
    weights = fit_keys(weights, backbone.state_dict())
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{ckpt_path} does not match backbone {pre_cfg.backbone.name!r}: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return backbone, dim, pre_cfg


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset, batch_size: int, workers: int):
    """(features (N, D), targets (N,)) of ``dataset`` on the CPU; the backbone runs in eval
    mode on the device it is on."""
    backbone.eval()
    device = next(backbone.parameters()).device
    feats, targets = [], []
    options = loader_options(workers, cuda=device.type == "cuda", persistent=False)
    for x, y in DataLoader(dataset, batch_size=batch_size, **options):
        feats.append(backbone(to_device(x, device)).cpu())
        targets.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(targets)


# data keys a linear config inherits from the pretrain run when it leaves them unset
INHERITED_DATA_KEYS = ("dataset", "train_path", "val_path", "annotations", "class_list",
                       "split_seed")


def open_labelled_splits(cfg: omegaconf.DictConfig, pre_cfg: omegaconf.DictConfig, use: str):
    """The train and test splits of an evaluation config (``data`` keys it leaves unset are
    the pretrain run's), each refused unless every image has a label (``use`` names the
    evaluation in the message)."""
    with open_dict(cfg):
        for key in INHERITED_DATA_KEYS:  # unset: the pretrain run's value
            if cfg.data.get(key) is None:
                cfg.data[key] = pre_cfg.data.get(key)
        cfg.data.generate = bool(pre_cfg.data.get("generate", False))
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {cfg.data.dataset!r}. "
                          f"Choose from {sorted(DATASETS)}")
    train = open_split(cfg.data, "train", verify=True)
    require_labels(train, use, f"the {cfg.data.dataset} train split at {cfg.data.train_path}")
    # the test split is read from data.val_path when set (a separate test folder), else
    # from the root that holds both splits
    test_root = cfg.data.val_path or cfg.data.train_path
    test = open_split(cfg.data, "test", verify=True, root=test_root)
    require_labels(test, use, f"the {cfg.data.dataset} test split at {test_root}")
    return train, test


def features_protocol(cfg, backbone, transform, train, test):
    """(classifier on standardised features, train loader, test loader) of protocol
    features: the features are extracted once, on the backbone's device."""
    workers = int(cfg.data.num_workers)
    x_tr, y_tr = extract_features(backbone, TransformedImages(train.dataset, transform),
                                  cfg.feature_batch_size, workers)
    x_te, y_te = extract_features(backbone, TransformedImages(test.dataset, transform),
                                  cfg.feature_batch_size, workers)
    head = StandardizedLinear(x_tr.mean(0), x_tr.std(0).clamp_min(1e-6), train.num_classes)
    train_loader = DataLoader(TensorDataset(x_tr, y_tr), batch_size=cfg.optimizer.batch_size,
                              shuffle=True)
    test_loader = DataLoader(TensorDataset(x_te, y_te), batch_size=cfg.feature_batch_size)
    return head, None, train_loader, test_loader


def paper_protocol(cfg, backbone, dim, pre_cfg, train, test):
    """(linear head, frozen backbone, train loader, test loader) of protocol paper."""
    cuda = next(backbone.parameters()).device.type == "cuda"
    train_loader, test_loader = crop_loaders(
        pre_cfg, train.dataset, test.dataset, cfg.crop_min_scale, cfg.optimizer.batch_size,
        cfg.feature_batch_size, int(cfg.data.num_workers), cuda=cuda)
    return nn.Linear(dim, train.num_classes), backbone, train_loader, test_loader


def linear_eval(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> dict:
    """Runs the linear protocol; returns and writes {'top1', 'top5', ...} (percent)."""
    cfg = check_linear_cfg(cfg, source)
    ckpt = resolve_pretrained(cfg.pretrained)
    backbone, dim, pre_cfg = load_pretrained_backbone(ckpt)
    preset = linear_preset(cfg, pre_cfg.method, source)
    device = eval_device(cfg.accelerator)
    backbone.to(device)
    pl.seed_everything(cfg.seed, workers=True)
    train, test = open_labelled_splits(cfg, pre_cfg, "linear evaluation")
    if cfg.protocol == "features":
        parts = features_protocol(cfg, backbone, eval_transform(pre_cfg), train, test)
    else:
        parts = paper_protocol(cfg, backbone, dim, pre_cfg, train, test)
    head, frozen, train_loader, test_loader = parts
    opt = optimization(cfg, cfg.optimizer.lr)
    model = Classifier(head, opt, len(train_loader), cfg.max_epochs, backbone=frozen)
    out_dir, name = output_place(cfg, ckpt, f"linear-{pre_cfg.name}")
    metrics = fit_and_test(model, train_loader, test_loader, cfg, device, out_dir,
                           "linear_logs", name)
    results = {
        "top1": 100.0 * float(metrics["test_acc1"]),
        "top5": 100.0 * float(metrics["test_acc5"]),
        "protocol": cfg.protocol, "preset": preset,
        "pretrained": ckpt, "method": pre_cfg.method, "dataset": cfg.data.dataset,
        "num_train": len(train_loader.dataset), "num_test": len(test_loader.dataset),
        "epochs": cfg.max_epochs, "lr": opt.head_lr, "batch_size": cfg.optimizer.batch_size,
        "device": device.type,
    }
    print(f"[clinfonce] linear ({cfg.protocol} protocol, {preset} settings) top-1 "
          f"{results['top1']:.2f}%  top-5 {results['top5']:.2f}%  ({pre_cfg.method}, "
          f"{cfg.data.dataset})")
    if cfg.compare_zoo:
        data = {key: cfg.data.get(key) for key in EVAL_DATA}
        results["comparison"] = compare(cfg, {**results, "name": name}, data, out_dir,
                                        linear_eval)
        print(format_rows(results["comparison"], cfg.data.dataset))
    path = write_results(out_dir, name, results)
    print(f"[clinfonce] results -> {path}")
    return results
