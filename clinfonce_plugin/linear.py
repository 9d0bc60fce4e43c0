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

from .cfgcheck import ConfigError, check_known_keys, fill_defaults
from .config import _with_location
from .data.registry import DATASETS, build_dataset
from .host.backbone import make_backbone
from .train import _EvalPairs, eval_transform
from .zoo import resolve_pretrained

TOP_LEVEL = {"defaults", "hydra", "name", "pretrained", "data", "optimizer", "max_epochs",
             "seed", "accelerator", "devices", "feature_batch_size", "enable_progress_bar",
             "output_dir"}
DATA = {"dataset": None, "train_path": None, "num_workers": 2}
OPTIMIZER = {"name": "sgd", "lr": 0.1, "batch_size": 256, "weight_decay": 0.0,
             "momentum": 0.9}


def check_linear_cfg(cfg: omegaconf.DictConfig, source: Optional[str] = None):
    OmegaConf.set_struct(cfg, False)
    try:
        check_known_keys(cfg, TOP_LEVEL, "config (top level)")
        if not cfg.get("pretrained"):
            raise ConfigError("missing required key pretrained: give a checkpoint path or a "
                              "zoo name, e.g. pretrained=trained_models/.../x.ckpt")
        with open_dict(cfg):
            fill_defaults(cfg, "data", DATA)
            fill_defaults(cfg, "optimizer", OPTIMIZER)
            if cfg.optimizer.name not in ("sgd", "adamw"):
                raise ConfigError(f"optimizer.name {cfg.optimizer.name!r}: choose from "
                                  f"['adamw', 'sgd']")
            cfg.max_epochs = cfg.get("max_epochs") or 100
            cfg.seed = cfg.get("seed", 5)
            cfg.feature_batch_size = cfg.get("feature_batch_size") or 256
    except ConfigError as err:
        raise _with_location(err, source) from None
    return cfg


def load_pretrained_backbone(ckpt_path: str):
    """Backbone rebuilt from ``args.json`` beside the checkpoint, weights from ``backbone.*``."""
    args_path = os.path.join(os.path.dirname(os.path.abspath(ckpt_path)), "args.json")
    if not os.path.isfile(args_path):
        raise FileNotFoundError(f"expected the pretrain config args.json beside {ckpt_path} "
                                f"(looked for {args_path})")
    with open(args_path) as f:
        pre_cfg = OmegaConf.create(json.load(f))
    backbone, dim = make_backbone(pre_cfg)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    weights = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not weights:
        raise ValueError(f"{ckpt_path} has no 'backbone.*' weights in its state_dict")
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt_path} does not match backbone {pre_cfg.backbone.name!r}: "
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


def linear_eval(cfg: omegaconf.DictConfig, source: Optional[str] = None) -> dict:
    """Runs the linear protocol; returns and writes {'top1', 'top5', ...} (percent)."""
    cfg = check_linear_cfg(cfg, source)
    ckpt = resolve_pretrained(cfg.pretrained)
    backbone, dim, pre_cfg = load_pretrained_backbone(ckpt)
    with open_dict(cfg):
        cfg.data.dataset = cfg.data.dataset or pre_cfg.data.dataset
        cfg.data.train_path = cfg.data.train_path or pre_cfg.data.train_path
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.data.dataset!r}. Choose from {sorted(DATASETS)}")
    pl.seed_everything(cfg.seed, workers=True)
    transform = eval_transform(pre_cfg)
    train_base, _, num_classes = build_dataset(cfg.data.dataset, cfg.data.train_path, "train")
    test_base, _, _ = build_dataset(cfg.data.dataset, cfg.data.train_path, "test")
    workers = int(cfg.data.num_workers)
    x_tr, y_tr = extract_features(backbone, _EvalPairs(train_base, transform),
                                  cfg.feature_batch_size, workers)
    x_te, y_te = extract_features(backbone, _EvalPairs(test_base, transform),
                                  cfg.feature_batch_size, workers)
    mean, std = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
    probe = LinearProbe(dim, num_classes, mean, std, cfg.optimizer, cfg.max_epochs)
    out_dir = cfg.get("output_dir") or os.path.dirname(os.path.abspath(ckpt))
    name = cfg.get("name") or f"linear-{pre_cfg.name}"
    trainer = pl.Trainer(max_epochs=cfg.max_epochs, accelerator=cfg.get("accelerator") or "cpu",
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
    path = os.path.join(out_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"[clinfonce] linear top-1 {results['top1']:.2f}%  top-5 {results['top5']:.2f}%  "
          f"({pre_cfg.method}, {cfg.data.dataset}) -> {path}")
    return results
