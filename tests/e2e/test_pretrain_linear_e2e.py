"""A tiny end-to-end run: synthetic CUB (CUB layout on disk) -> pretrain clinfonce with
attribute clusters -> checkpoint + args.json -> linear evaluation -> JSON results; plus the
entry points' config errors."""
import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.errors import UserError
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pretrain_cfg(root, out_dir, method="clinfonce", **method_kwargs):
    cfg = yaml_pretrain_cfg(f"{method}_synthetic_cub", "symmetric_32", root, out_dir)
    for key, value in method_kwargs.items():
        cfg.method_kwargs[key] = value
    return cfg


@pytest.mark.slow
def test_attribute_clinfonce_pretrain_then_linear(tiny_cub, tmp_path):
    cfg = _pretrain_cfg(tiny_cub, str(tmp_path), clusters={"provider": "attributes", "k": 4})
    ckpt = pretrain(cfg)
    run_dir = os.path.dirname(ckpt)
    assert os.path.isfile(ckpt) and os.path.isfile(os.path.join(run_dir, "args.json"))
    assert not os.path.exists(run_dir + ".partial")  # nothing half-written left behind
    args = json.load(open(os.path.join(run_dir, "args.json")))
    assert args["method"] == "clinfonce" and args["data"]["num_classes"] == 6
    state = safe_load(ckpt)["state_dict"]
    assert any(k.startswith("backbone.") for k in state) and "provider.ids" in state
    # the CSV log carries the cluster loss and the number of clusters
    log = open(os.path.join(run_dir, "logs", "metrics.csv")).read().splitlines()[0]
    assert "train_clinfonce_loss_epoch" in log and "num_clusters" in log

    res = linear_eval(yaml_linear_cfg("clinfonce_synthetic_cub", ckpt, tiny_cub))
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
    assert res["num_train"] == 36 and res["num_test"] == 36
    saved = json.load(open(os.path.join(run_dir, "linear-clinfonce-synthetic_cub.json")))
    assert saved["top1"] == pytest.approx(res["top1"])


def _run(script, *args):
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_main_pretrain_reports_unknown_key_with_file_and_line():
    proc = _run("main_pretrain.py", "--config-name", "clinfonce_synthetic_cub.yaml",
                "data.trian_path=x")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: command line (data.trian_path=x): data.trian_path: "
                                "unknown key. Valid keys here: [")
    assert "Traceback" not in proc.stderr


def test_check_pretrain_cfg_points_at_the_yaml_line(tmp_path):
    from clinfonce_plugin import host
    from clinfonce_plugin.config import ConfigError, check_pretrain_cfg

    path = tmp_path / "bad.yaml"
    path.write_text("method: clinfonce\nbackbone:\n  name: test_resnet\ndata:\n"
                    "  dataset: synthetic_cub\n  train_path: x\n  num_wrokers: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:7: data.num_wrokers: unknown key"):
        check_pretrain_cfg(OmegaConf.load(path), {"synthetic_cub": 1}, host.METHODS, str(path))
    path.write_text("method: clinfonce\nbackbone:\n  name: test_resnet\ndata:\n"
                    "  dataset: imagenet1k\n  train_path: x\noptimizer:\n  name: sgd\n"
                    "  batch_size: 4\n  lr: 0.1\naugmentations:\n  - crop_size: 32\n"
                    "    num_crops: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:5: data.dataset: unknown dataset 'imagenet1k'"):
        check_pretrain_cfg(OmegaConf.load(path), {"synthetic_cub": 1}, host.METHODS, str(path))
    path.write_text("method: clinfonse\nbackbone:\n  name: test_resnet\ndata:\n"
                    "  dataset: synthetic_cub\n  train_path: x\noptimizer:\n  name: sgd\n"
                    "  batch_size: 4\n  lr: 0.1\naugmentations:\n  - crop_size: 32\n"
                    "    num_crops: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:1: method: unknown method 'clinfonse'. "):
        check_pretrain_cfg(OmegaConf.load(path), {"synthetic_cub": 1}, host.METHODS, str(path))


def test_linear_without_pretrained_checkpoint_is_a_clear_error(tmp_path):
    lin = OmegaConf.create({"pretrained": str(tmp_path / "missing.ckpt")})
    with pytest.raises(UserError, match="pretrained=.*missing.ckpt.*no such checkpoint file"):
        linear_eval(lin)
