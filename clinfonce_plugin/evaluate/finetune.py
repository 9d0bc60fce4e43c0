"""Semi-supervised fine-tuning (WCL Table 8, the SimCLR / PCL protocol): the whole pretrained
backbone plus a linear head trained on the labelled subset of the training split (a
per-class label fraction drawn from a seed, or a subset file; see ``data.label_subset``),
random-resized crop + flip each epoch, top-1/top-5 on the centre-cropped test split written
as JSON, and the fine-tuned weights saved beside it."""
import os
from typing import Optional, Tuple

import lightning.pytorch as pl
import numpy as np
import omegaconf
import torch
import torch.nn as nn
from omegaconf import OmegaConf
from torch.utils.data import Subset

from .. import host
from ..run.callbacks import backbone_origin
from ..run.checkpoints import ARGS_KEY
from .classifier import Classifier
from ..config import check_finetune_cfg
from ..data.label_subset import per_class_subset, read_subset_file
from ..errors import DataError
from .shared import crop_loaders, fit_and_test, optimization, output_place, write_results
from .pretrained import load_pretrained_backbone, open_labelled_splits
from ..utils.atomic import atomic_path
from ..utils.devices import eval_device
from ..run.zoo import resolve_pretrained


def _subset_file(cfg: omegaconf.DictConfig) -> str:
    """``subset_file`` as given, else relative to ``data.train_path``."""
    path = os.path.expanduser(cfg.subset_file)
    for candidate in (path, os.path.join(cfg.data.train_path, path)):
        if os.path.isfile(candidate):
            return candidate
    raise DataError(f"subset_file {cfg.subset_file!r} not found (looked for {path} and "
                    f"{os.path.join(cfg.data.train_path, path)})")


def labelled_subset(cfg: omegaconf.DictConfig, train) -> Tuple[np.ndarray, dict]:
    """Sorted indices of the labelled training images and how they were chosen (for the
    results)."""
    if cfg.subset_file is None:
        idx = per_class_subset(train.info.labels, cfg.label_fraction, cfg.subset_seed)
        return idx, {"label_fraction": cfg.label_fraction, "subset_seed": cfg.subset_seed}
    if train.info.paths is None:
        raise DataError(f"subset_file: the {cfg.data.dataset} reader gives no image paths; "
                        f"use label_fraction")
    path = _subset_file(cfg)
    try:
        idx = read_subset_file(path, train.info.paths, f"{cfg.data.dataset} train split")
    except ValueError as err:
        raise DataError(str(err)) from None
    return idx, {"subset_file": os.path.abspath(path)}


def save_weights(path: str, model: Classifier, pre_cfg: omegaconf.DictConfig) -> None:
    """The fine-tuned ``backbone.*`` and ``head.*`` weights with the pretrain config under
    ``"args"`` (the zoo file format: ``pretrained=`` of main_linear.py / main_knn.py loads
    it weights-only), written in one ``os.replace``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"state_dict": state,
           "clinfonce_backbone": backbone_origin(host.HOST_NAME, pre_cfg.backbone.name,
                                                 model.backbone),
           ARGS_KEY: OmegaConf.to_container(pre_cfg, resolve=True)}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def finetune_eval(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> dict:
    """Fine-tunes and tests; returns and writes {'top1', 'top5', ...} (percent)."""
    cfg = check_finetune_cfg(cfg, source)
    ckpt = resolve_pretrained(cfg.pretrained)
    backbone, dim, pre_cfg = load_pretrained_backbone(ckpt)
    device = eval_device(cfg.accelerator)
    pl.seed_everything(cfg.seed, workers=True)
    train, test = open_labelled_splits(cfg, pre_cfg, "fine-tuning")
    idx, chosen = labelled_subset(cfg, train)
    train_loader, test_loader = crop_loaders(
        pre_cfg, Subset(train.dataset, idx.tolist()), test.dataset, cfg.crop_min_scale,
        cfg.optimizer.batch_size, cfg.test_batch_size, int(cfg.data.num_workers),
        cuda=device.type == "cuda")
    opt = optimization(cfg, cfg.optimizer.head_lr, backbone_lr=cfg.optimizer.lr)
    model = Classifier(nn.Linear(dim, train.num_classes), opt, len(train_loader),
                       cfg.max_epochs, backbone=backbone, train_backbone=True)
    out_dir, name = output_place(cfg, ckpt, f"finetune-{pre_cfg.name}")
    metrics = fit_and_test(model, train_loader, test_loader, cfg, device, out_dir,
                           "finetune_logs", name)
    weights = os.path.join(out_dir, f"{name}.pt") if cfg.save_weights else None
    if weights:
        save_weights(weights, model, pre_cfg)
    counts = np.bincount(train.info.labels[idx], minlength=train.num_classes)
    results = {
        "top1": 100.0 * float(metrics["test_acc1"]),
        "top5": 100.0 * float(metrics["test_acc5"]),
        **chosen, "num_labelled": int(len(idx)), "num_train": int(train.info.num_samples),
        "labelled_per_class": {"min": int(counts.min()), "max": int(counts.max())},
        "pretrained": ckpt, "method": pre_cfg.method, "dataset": cfg.data.dataset,
        "num_test": len(test_loader.dataset), "epochs": cfg.max_epochs,
        "backbone_lr": opt.backbone_lr, "head_lr": opt.head_lr,
        "batch_size": cfg.optimizer.batch_size, "device": device.type, "weights": weights,
    }
    path = write_results(out_dir, name, results)
    print(f"[clinfonce] fine-tuning with {len(idx)} labelled of {train.info.num_samples} "
          f"training images: top-1 {results['top1']:.2f}%  top-5 {results['top5']:.2f}%  "
          f"({pre_cfg.method}, {cfg.data.dataset}) -> {path}")
    return results
