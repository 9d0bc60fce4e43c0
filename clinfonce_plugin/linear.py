"""Linear evaluation: frozen pretrained backbone, features of the train/test splits extracted
once (deterministic resize + centre crop), a linear classifier trained on them with
Lightning, top-1/top-5 on the test split written as JSON."""
import json
import os
from typing import Optional

import lightning.pytorch as pl
import omegaconf
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf, open_dict
from torch.utils.data import DataLoader, TensorDataset

from .checkpoints import check_finite, fit_keys, pretrain_args, safe_load, state_dict_of
from .compare import compare, format_rows
from .config import EVAL_DATA, check_linear_cfg
from .data.registry import DATASETS, open_split, require_labels
from .data.indexed import TransformedImages
from .data.transforms import eval_transform
from .errors import CheckpointError, ConfigError
from .host.backbone import make_backbone
from .utils.devices import resolve_accelerator
from .zoo import default_output_dir, resolve_pretrained


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
    backbone.eval()
    feats, targets = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        feats.append(backbone(x))
        targets.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(targets)


class LinearProbe(pl.LightningModule):
    """Linear classifier on fixed features (standardised with the train statistics)."""

    def __init__(self, dim: int, num_classes: int, mean, std, opt_cfg, max_epochs: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.fc = nn.Linear(dim, num_classes)
        self.opt_cfg, self.max_epochs = opt_cfg, max_epochs
        self.results = {}

    def forward(self, x):
        return self.fc((x - self.mean) / self.std)

    def training_step(self, batch, _):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, prog_bar=True)
        return loss

    def test_step(self, batch, _):
        x, y = batch
        logits = self(x)
        k = min(5, logits.size(1))
        top = logits.topk(k, dim=1).indices
        self.log_dict({"test_acc1": (top[:, 0] == y).float().mean(),
                       "test_acc5": (top == y[:, None]).any(1).float().mean()},  # top-min(5, C)
                      on_epoch=True)

    def configure_optimizers(self):
        o = self.opt_cfg
        if o.name == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=o.lr, momentum=o.momentum,
                                  weight_decay=o.weight_decay)
        else:
            opt = torch.optim.AdamW(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.max_epochs)
        return [opt], [sched]


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


def linear_eval(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> dict:
    """Runs the linear protocol; returns and writes {'top1', 'top5', ...} (percent)."""
    cfg = check_linear_cfg(cfg, source)
    ckpt = resolve_pretrained(cfg.pretrained)
    backbone, dim, pre_cfg = load_pretrained_backbone(ckpt)
    pl.seed_everything(cfg.seed, workers=True)
    transform = eval_transform(pre_cfg)
    train, test = open_labelled_splits(cfg, pre_cfg, "linear evaluation")
    num_classes = train.num_classes
    workers = int(cfg.data.num_workers)
    x_tr, y_tr = extract_features(backbone, TransformedImages(train.dataset, transform),
                                  cfg.feature_batch_size, workers)
    x_te, y_te = extract_features(backbone, TransformedImages(test.dataset, transform),
                                  cfg.feature_batch_size, workers)
    mean, std = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
    probe = LinearProbe(dim, num_classes, mean, std, cfg.optimizer, cfg.max_epochs)
    out_dir = cfg.get("output_dir") or default_output_dir(cfg.pretrained, ckpt)
    name = cfg.get("name") or f"linear-{pre_cfg.name}"
    trainer = pl.Trainer(max_epochs=cfg.max_epochs,
                         accelerator=resolve_accelerator(cfg.get("accelerator")),
                         devices=1, logger=CSVLogger(out_dir, name="linear_logs", version=name),
                         enable_checkpointing=False,
                         enable_progress_bar=cfg.get("enable_progress_bar", True),
                         log_every_n_steps=1)
    trainer.fit(probe, DataLoader(TensorDataset(x_tr, y_tr), batch_size=cfg.optimizer.batch_size,
                                  shuffle=True))
    metrics = trainer.test(probe, DataLoader(TensorDataset(x_te, y_te), batch_size=1024),
                           verbose=False)[0]
    results = {
        "top1": 100.0 * float(metrics["test_acc1"]),
        "top5": 100.0 * float(metrics["test_acc5"]),
        "pretrained": ckpt, "method": pre_cfg.method, "dataset": cfg.data.dataset,
        "num_train": len(y_tr), "num_test": len(y_te), "epochs": cfg.max_epochs,
    }
    print(f"[clinfonce] linear top-1 {results['top1']:.2f}%  top-5 {results['top5']:.2f}%  "
          f"({pre_cfg.method}, {cfg.data.dataset})")
    if cfg.compare_zoo:
        data = {key: cfg.data.get(key) for key in EVAL_DATA}
        results["comparison"] = compare(cfg, {**results, "name": name}, data, out_dir,
                                        linear_eval)
        print(format_rows(results["comparison"], cfg.data.dataset))
    path = os.path.join(out_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"[clinfonce] results -> {path}")
    return results
