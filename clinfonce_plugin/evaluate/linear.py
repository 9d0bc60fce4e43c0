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
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from .classifier import Classifier, StandardizedLinear
from .compare import compare, format_rows
from ..config import EVAL_DATA, check_linear_cfg, linear_preset
from ..data.indexed import TransformedImages
from ..data.transforms import eval_transform
from .pretrained import extract_features, load_pretrained_backbone, open_labelled_splits
from .shared import crop_loaders, fit_and_test, optimization, output_place, write_results
from ..utils.devices import eval_device
from ..run.zoo import resolve_pretrained


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
