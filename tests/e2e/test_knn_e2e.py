"""kNN evaluation end to end: pretrain 1 epoch on the tiny synthetic CUB, then main_knn's job
in-process (table rows, JSON beside the checkpoint, k clipped to the training set); and the
entry point's config error."""
import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.knn import knn_eval
from clinfonce_plugin.train import pretrain
from tests.helpers import yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _knn_cfg(ckpt, root):
    cfg = OmegaConf.load(os.path.join(REPO, "scripts/knn/clinfonce_synthetic_cub.yaml"))
    cfg.pop("defaults")
    cfg.pop("hydra")
    cfg.pretrained, cfg.data.train_path, cfg.data.num_workers = ckpt, root, 0
    return cfg


@pytest.mark.slow
def test_pretrain_then_knn(tiny_cub, tmp_path, capsys):
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", tiny_cub, str(tmp_path),
                            max_epochs=1)
    cfg.method_kwargs.clusters = {"provider": "attributes", "k": 4}
    ckpt = pretrain(cfg)
    res = knn_eval(_knn_cfg(ckpt, tiny_cub))
    out = capsys.readouterr().out
    # 36 training images: k 50, 100, 200 become one k=36 row per distance
    assert "note: k 50, 100, 200 > 36 training samples: evaluated as k=36" in out
    assert [(r["distance"], r["k"]) for r in res["rows"]] == \
        [(d, k) for d in ("cosine", "euclidean") for k in (10, 20, 36)]
    assert res["num_train"] == 36 and res["num_test"] == 36
    for r in res["rows"]:
        assert r["feature"] == "backbone"
        assert 0.0 <= r["top1"] <= r["top5"] <= 100.0
        # whole images out of 36
        assert r["top1"] * 36 / 100 == pytest.approx(round(r["top1"] * 36 / 100))
    saved = json.load(open(os.path.join(os.path.dirname(ckpt), "knn-clinfonce-synthetic_cub.json")))
    assert saved["rows"] == res["rows"] and saved["temperature"] == 0.07
    assert "cosine        10" in out


def test_main_knn_reports_unknown_key():
    proc = subprocess.run([sys.executable, "main_knn.py", "--config-name",
                           "clinfonce_synthetic_cub.yaml", "temprature=0.1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: command line (temprature=0.1): temprature: unknown key")
    assert "Traceback" not in proc.stderr
