"""The classifier trainer of linear evaluation and fine-tuning: lr schedules against values
computed by hand, the lr the optimizer really uses under the papers' presets, and a frozen
backbone that training leaves untouched (batch-norm statistics included) while a trained
one changes."""
import math
import warnings

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from clinfonce_plugin.evaluate.classifier import Classifier, Optimization, Schedule
from clinfonce_plugin.config import check_linear_cfg, linear_preset
from clinfonce_plugin.evaluate.shared import optimization


def test_cosine_per_step_to_zero():
    # WCL: cosine over all 2 x 3 steps, 0.5 (1 + cos(pi t / 6))
    s = Schedule("cosine", "step", 0.0)
    got = [s.factor(t, 3, 2) for t in range(6)]
    assert got == pytest.approx([1.0, 0.9330127019, 0.75, 0.5, 0.25, 0.0669872981])


def test_cosine_per_epoch_with_floor():
    # Cl-InfoNCE: constant within an epoch, 0.001 + 0.999 x 0.5 (1 + cos(pi e / 4))
    s = Schedule("cosine", "epoch", 0.001)
    got = [s.factor(t, 2, 4) for t in range(8)]
    per_epoch = [1.0, 0.8536998, 0.5005, 0.1473002]
    assert got == pytest.approx([v for v in per_epoch for _ in range(2)], rel=1e-6)


def test_step_schedule():
    s = Schedule("step", milestones=(12, 16), gamma=0.2)
    got = {e: s.factor(e * 5, 5, 20) for e in (0, 11, 12, 15, 16, 19)}
    assert got == pytest.approx({0: 1.0, 11: 1.0, 12: 0.2, 15: 0.2, 16: 0.04, 19: 0.04})


def _lrs(model, steps):
    opt, sched = model.configure_optimizers()
    opt, sched = opt[0], sched[0]["scheduler"]
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return opt, out


def test_wcl_preset_lr_reaches_the_optimizer():
    # lr 0.1 x 64/256 = 0.025, cosine per step over 2 epochs of 3 steps, Nesterov, no wd
    cfg = check_linear_cfg(OmegaConf.create({"pretrained": "x", "protocol": "paper",
                                             "max_epochs": 2, "optimizer": {"batch_size": 64}}))
    assert linear_preset(cfg, "wcl") == "wcl"
    model = Classifier(nn.Linear(4, 3), optimization(cfg, cfg.optimizer.lr), 3, cfg.max_epochs)
    opt, lrs = _lrs(model, 6)
    expected = [0.025 * 0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)]
    assert [g[0] for g in lrs] == pytest.approx(expected)
    group = opt.param_groups[0]
    assert (group["nesterov"], group["momentum"], group["weight_decay"]) == (True, 0.9, 0.0)


def test_clinfonce_preset_lr_reaches_the_optimizer():
    cfg = check_linear_cfg(OmegaConf.create({"pretrained": "x", "protocol": "paper",
                                             "max_epochs": 4}))
    assert linear_preset(cfg, "simclr") == "clinfonce"
    model = Classifier(nn.Linear(4, 3), optimization(cfg, cfg.optimizer.lr), 1, cfg.max_epochs)
    opt, lrs = _lrs(model, 4)
    # not scaled by the batch (128): 0.3 x (0.001 + 0.999 x 0.5 (1 + cos(pi e / 4)))
    assert [g[0] for g in lrs] == pytest.approx([0.3, 0.2561100, 0.15015, 0.0441900], rel=1e-5)
    group = opt.param_groups[0]
    assert (group["nesterov"], group["momentum"], group["weight_decay"]) == (True, 0.95, 1e-4)


def test_finetune_groups_get_their_own_lrs():
    opt = Optimization("sgd", head_lr=0.2, backbone_lr=0.01, momentum=0.9, nesterov=False,
                       weight_decay=0.0, schedule=Schedule("step", milestones=(1,), gamma=0.2))
    model = Classifier(nn.Linear(4, 3), opt, 1, 2, backbone=nn.Linear(5, 4),
                       train_backbone=True)
    _, lrs = _lrs(model, 2)
    assert lrs[0] == pytest.approx([0.2, 0.01]) and lrs[1] == pytest.approx([0.04, 0.002])


def _backbone():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU())


def _fit(train_backbone):
    backbone = _backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    opt = Optimization("sgd", head_lr=0.5, backbone_lr=0.5 if train_backbone else None,
                       momentum=0.9, nesterov=False, weight_decay=0.0, schedule=Schedule())
    head = nn.Linear(8, 3)
    head_before = head.weight.detach().clone()
    model = Classifier(head, opt, 2, 2, backbone=backbone, train_backbone=train_backbone)
    data = TensorDataset(torch.randn(16, 6) * 3 + 1, torch.randint(0, 3, (16,)))
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, DataLoader(data, batch_size=8))
    changed = {k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])}
    return changed, not torch.equal(head.weight.detach(), head_before)


def test_a_frozen_backbone_is_left_untouched():
    changed, head_changed = _fit(train_backbone=False)
    assert changed == set() and head_changed


def test_a_trained_backbone_changes_weights_and_statistics():
    changed, head_changed = _fit(train_backbone=True)
    assert {"0.weight", "1.running_mean", "1.running_var"} <= changed and head_changed


class _ImageTensors(torch.utils.data.Dataset):
    """Same items as a TensorDataset, but not one: a loader that decodes images."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("in_memory", [True, False])
def test_the_few_workers_warning_is_hidden_only_for_features_in_memory(
        monkeypatch, tmp_path, in_memory):
    from lightning.pytorch.trainer.connectors import data_connector

    from clinfonce_plugin.evaluate.shared import fit_and_test

    # Lightning warns when a loader has < 2 workers and the machine could give it more
    monkeypatch.setattr(data_connector, "suggested_max_num_workers", lambda devices: 4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g), torch.arange(8) % 3
    data = TensorDataset(x, y) if in_memory else _ImageTensors(x, y)
    opt = Optimization("sgd", head_lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
                       schedule=Schedule())
    cfg = OmegaConf.create({"max_epochs": 1, "enable_progress_bar": False})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fit_and_test(Classifier(nn.Linear(4, 3), opt, 2, 1), DataLoader(data, batch_size=4),
                     DataLoader(data, batch_size=4), cfg, torch.device("cpu"),
                     str(tmp_path), "logs", "run")
    few = sorted(m for m in (str(w.message) for w in seen) if "does not have many workers" in m)
    if in_memory:
        assert few == []
    else:
        assert [m.split("'")[1] for m in few] == ["test_dataloader", "train_dataloader"]


def test_a_rerun_logs_beside_the_earlier_log_and_keeps_it(tmp_path):
    from clinfonce_plugin.evaluate.shared import log_version

    assert log_version(str(tmp_path), "logs", "run") == "run"
    (tmp_path / "logs" / "run").mkdir(parents=True)
    (tmp_path / "logs" / "run" / "metrics.csv").write_text("epoch\n0\n")
    assert log_version(str(tmp_path), "logs", "run") == "run-1"
    (tmp_path / "logs" / "run-1").mkdir()
    assert log_version(str(tmp_path), "logs", "run") == "run-2"
    assert (tmp_path / "logs" / "run" / "metrics.csv").read_text() == "epoch\n0\n"
