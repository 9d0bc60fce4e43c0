"""Every key's kind and range is checked before training, with the key and where it was set
(issue 11, item 7; issue 12, item 2)."""
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.config import ConfigError, check_linear_cfg, check_pretrain_cfg, \
    linear_preset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
YAML = """method: clinfonce
max_epochs: {max_epochs}
backbone:
  name: test_resnet
data:
  dataset: synthetic_cub
  train_path: x
optimizer:
  name: sgd
  batch_size: 8
  lr: {lr}
augmentations:
  - crop_size: 32
    num_crops: 2
"""


def _check(tmp_path, max_epochs=3, lr=0.1):
    path = tmp_path / "cfg.yaml"
    path.write_text(YAML.format(max_epochs=max_epochs, lr=lr))
    return path, lambda: check_pretrain_cfg(OmegaConf.load(path), {"synthetic_cub"},
                                            host.METHODS, str(path))


@pytest.mark.parametrize("value,expected", [
    (0, "expected a value >= 1, got 0"), (-1, "expected a value >= 1, got -1"),
    ("fast", "expected an integer, got 'fast'"), (2.5, "expected an integer, got 2.5"),
    ("true", "expected an integer, got True"),
])
def test_max_epochs_must_be_a_positive_integer(tmp_path, value, expected):
    path, check = _check(tmp_path, max_epochs=value)
    with pytest.raises(ConfigError, match=rf"^{path}:2: max_epochs: {expected}"):
        check()


@pytest.mark.parametrize("value,expected", [
    ("fast", "expected a number, got 'fast'"), (0, r"expected a value > 0, got 0"),
    (-0.1, r"expected a value > 0, got -0.1"), (".nan", "expected a finite number, got nan"),
])
def test_lr_must_be_a_positive_number(tmp_path, value, expected):
    path, check = _check(tmp_path, lr=value)
    with pytest.raises(ConfigError, match=rf"^{path}:11: optimizer.lr: {expected}"):
        check()


def test_defaults_fill_only_missing_keys(tmp_path):
    path, check = _check(tmp_path, max_epochs=7)
    cfg = check()
    assert cfg.max_epochs == 7 and cfg.seed == 5 and cfg.checkpoint.frequency == 1
    assert cfg.name == "clinfonce-synthetic_cub" and cfg.resume is False
    assert cfg.augmentations[0].rrc.crop_min_scale == 0.08


@pytest.mark.parametrize("key,value", [
    ("dali", {"enabled": True}), ("auto_umap", {"enabled": True}), ("debug_augmentations", True),
    ("data.format", "dali"), ("data.fraction", 0.5), ("checkpoint.keep_prev", True),
    ("performance", {"disable_channel_last": False}),
])
def test_solo_keys_the_runner_does_not_act_on_are_refused(tmp_path, key, value):
    path, _ = _check(tmp_path)
    cfg = OmegaConf.load(path)
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(ConfigError, match=rf"{key}: not supported by this runner: "):
        check_pretrain_cfg(cfg, {"synthetic_cub"}, host.METHODS, str(path))


@pytest.mark.parametrize("key,value", [
    ("debug_augmentations", False),
    ("data.fraction", -1), ("checkpoint.keep_prev", False),
])
def test_solo_keys_at_their_neutral_value_are_accepted_and_dropped(tmp_path, key, value):
    path, _ = _check(tmp_path)
    cfg = OmegaConf.load(path)
    OmegaConf.update(cfg, key, value, force_add=True)
    out = check_pretrain_cfg(cfg, {"synthetic_cub"}, host.METHODS, str(path))
    assert OmegaConf.select(out, key) is None


def test_linear_values_are_checked_too():
    with pytest.raises(ConfigError, match="max_epochs: expected a value >= 1, got 0"):
        check_linear_cfg(OmegaConf.create({"pretrained": "x.ckpt", "max_epochs": 0}))
    with pytest.raises(ConfigError, match="optimizer.lr: expected a number, got 'fast'"):
        check_linear_cfg(OmegaConf.create({"pretrained": "x.ckpt",
                                           "optimizer": {"lr": "fast"}}))
    cfg = check_linear_cfg(OmegaConf.create({"pretrained": "x"}))
    assert cfg.max_epochs is None  # unset until the protocol's preset fills it
    linear_preset(cfg, "simclr")
    assert cfg.max_epochs == 100


def test_documented_keys_are_set_on_the_command_line_without_plus(tmp_path):
    """strategy, enable_progress_bar, resume_from_checkpoint are absent from the yaml: they
    are set as key=value all the same, and checked (here: a missing resume file)."""
    missing = tmp_path / "nope.ckpt"
    proc = subprocess.run(
        [sys.executable, "main_pretrain.py", "--config-name", "clinfonce_synthetic_cub.yaml",
         "strategy=auto", "enable_progress_bar=false", f"resume_from_checkpoint={missing}",
         f"checkpoint.dir={tmp_path}", "max_epochs=0"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: command line (max_epochs=0): max_epochs: expected a value >= 1, got 0")
    proc = subprocess.run(
        [sys.executable, "main_pretrain.py", "--config-name", "clinfonce_synthetic_cub.yaml",
         "strategy=auto", "enable_progress_bar=false", f"resume_from_checkpoint={missing}",
         f"checkpoint.dir={tmp_path}", f"data.train_path={tmp_path}/absent", "data.generate=true"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: resume_from_checkpoint {missing} does not exist")
    assert not (tmp_path / "absent").exists()  # refused before the data was generated


def test_unset_normalisation_stays_absent_for_the_host_to_choose(tmp_path):
    # solo-learn's transform reads cfg.get("mean", <dataset default>): a filled-in None
    # would reach Normalize
    path, check = _check(tmp_path)
    cfg = check()
    assert "mean" not in cfg.augmentations[0] and "std" not in cfg.augmentations[0]
    raw = OmegaConf.load(path)
    raw.augmentations[0].mean = None
    cfg = check_pretrain_cfg(raw, {"synthetic_cub"}, host.METHODS, str(path))
    assert "mean" not in cfg.augmentations[0]
