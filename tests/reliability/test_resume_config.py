"""A resumed run refuses training keys that differ from the run it continues (the
checkpoint's optimiser, schedule and generators would override them), applies and records
the keys that may change (issue 25, item 4)."""
import csv
import json
import math

import lightning.pytorch as pl
import pytest
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.errors import ConfigError
from clinfonce_plugin.run.resume_config import (APPLIED_ON_RESUME, check_resume_config,
                                            differences)
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_pretrain_cfg

OLD = {"max_epochs": 2, "seed": 5, "resume": False, "enable_progress_bar": True,
       "optimizer": {"name": "sgd", "lr": 0.4, "kwargs": {"momentum": 0.9}},
       "scheduler": {"name": "warmup_cosine"},
       "augmentations": [{"crop_size": 32, "rrc": {"crop_min_scale": 0.3}}],
       "wandb": {"enabled": False, "project": "a"}, "data": {"num_workers": 2}}


def _new(**changes):
    """A copy of OLD with ``changes`` ({dotted key: value}) applied."""
    cfg = OmegaConf.create(OLD)
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, force_add=True, merge=False)
    return OmegaConf.to_container(cfg)


def test_differences_name_every_changed_leaf():
    new = _new(**{"optimizer.lr": 4.0, "augmentations": [{"crop_size": 32, "rrc": {
        "crop_min_scale": 0.5}}], "optimizer.kwargs": {"momentum": 0.9, "nesterov": True}})
    assert differences(OLD, new) == {
        "augmentations[0].rrc.crop_min_scale": (0.3, 0.5),
        "optimizer.kwargs.nesterov": ("<absent>", True),
        "optimizer.lr": (0.4, 4.0)}
    assert differences(OLD, json.loads(json.dumps(OLD))) == {}


def test_a_changed_training_key_is_refused_with_each_key_old_and_new():
    new = _new(**{"optimizer.lr": 4.0, "seed": 6, "enable_progress_bar": False})
    with pytest.raises(ConfigError, match=r"^resume: 2 training key\(s\) differ from the run "
                                          r"being resumed \(run/args.json; values as it "
                                          r"records them\): optimizer.lr: 0.4 -> 4, seed: 5 "
                                          r"-> 6\. ") as err:
        check_resume_config(OLD, new, "run/args.json")
    assert "enable_progress_bar" not in str(err.value)  # not a training key
    assert "\n" not in str(err.value)


def test_keys_that_are_not_training_keys_and_max_epochs_may_change():
    new = _new(**{"max_epochs": 5, "resume": True, "enable_progress_bar": False,
                  "wandb.project": "b", "data.num_workers": 0})
    assert check_resume_config(OLD, new, "args.json") == {
        "data.num_workers": (2, 0), "enable_progress_bar": (True, False),
        "max_epochs": (2, 5), "resume": (False, True), "wandb.project": ("a", "b")}


def test_max_epochs_is_the_one_training_key_applied_on_resume():
    assert APPLIED_ON_RESUME == ("max_epochs",)
    with pytest.raises(ConfigError, match=r"optimizer.lr: 0.4 -> 0.2\. .* may change on resume "
                                          r"here: max_epochs"):
        check_resume_config(OLD, _new(**{"optimizer.lr": 0.2}), "args.json")


class StopAtEpoch(pl.Callback):
    """Stops the run at the start of ``epoch`` (after the previous epoch's last.ckpt)."""

    class Stopped(Exception):
        pass

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise self.Stopped()


def _cfg(root, out, **changes):
    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", root, out)
    cfg.name = "r"
    cfg.log_every_n_steps = 1
    cfg.scheduler.warmup_epochs = 0  # a cosine from the first step: lr(s) = lr0 * c(s/total)
    cfg.scheduler.interval = "step"
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def _cosine(step, total, lr0):
    return lr0 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))


@pytest.mark.slow
def test_resume_refuses_a_new_lr_and_applies_and_records_a_new_max_epochs(tiny_cub, tmp_path):
    out = str(tmp_path)
    with pytest.raises(StopAtEpoch.Stopped):
        pretrain(_cfg(tiny_cub, out), callbacks=[StopAtEpoch(1)])
    partial = tmp_path / "simclr" / "r.partial"
    args_before = (partial / "args.json").read_bytes()
    lr0 = 0.4 * 12 / 256  # solo-learn's scaling: lr * batch_size * devices / 256
    assert json.loads(args_before)["optimizer"]["lr"] == pytest.approx(lr0)

    with pytest.raises(ConfigError, match=rf"^resume: 1 training key\(s\) differ from the run "
                                          rf"being resumed \({partial}/args.json; values as it "
                                          rf"records them\): optimizer.lr: 0.01875 -> 0.1875\. "):
        pretrain(_cfg(tiny_cub, out, resume=True, **{"optimizer.lr": 4.0}))
    assert (partial / "args.json").read_bytes() == args_before  # nothing recorded
    assert not (partial / "resumes.json").exists()
    assert not (tmp_path / "simclr" / "r.lock").exists()

    # on both hosts: solo-learn's cosine keeps the horizon in its checkpoint's state, and
    # ScheduleFromConfig puts the new one back when training starts
    pretrain(_cfg(tiny_cub, out, resume=True, max_epochs=3))
    run = tmp_path / "simclr" / "r"
    assert json.loads((run / "args.json").read_text())["max_epochs"] == 3
    record = json.loads((run / "resumes.json").read_text())
    assert len(record) == 1
    assert record[0]["checkpoint"] == str(partial / "last.ckpt")
    assert (record[0]["epoch"], record[0]["global_step"]) == (0, 3)
    assert record[0]["changed"] == {"max_epochs": {"old": 2, "new": 3},
                                    "resume": {"old": False, "new": True}}
    # applied for real: 3 epochs of 3 steps, and from the resume point the learning rate
    # follows the cosine over the new 9 steps, not over the old 6
    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    key = next(k for k in rows[0] if k.startswith("lr-") and k.endswith("/backbone"))
    lrs = {int(r["step"]): float(r[key]) for r in rows if r.get(key)}
    assert sorted(lrs) == list(range(9))
    for step in range(3):
        assert lrs[step] == pytest.approx(_cosine(step, 6, lr0), rel=1e-6)
    for step in range(3, 9):
        assert lrs[step] == pytest.approx(_cosine(step, 9, lr0), rel=1e-6)
        assert abs(_cosine(step, 9, lr0) - _cosine(step, 6, lr0)) > 1e-4
