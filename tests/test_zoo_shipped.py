"""The shipped zoo: every model zoo/build.py makes is in the manifest with its file present and
its sha256 verified, loads weights-only into the backbone its config names, and
``main_linear.py pretrained=zoo:<name>`` on a fresh working directory reproduces the linear
top-1 the manifest records."""
import json
import os
import subprocess
import sys

import pytest
import torch

from clinfonce_plugin.run.checkpoints import fit_keys
from clinfonce_plugin.run.zoo import ZOO_DIR, load_manifest, sha256sum
from clinfonce_plugin.zoo import verify_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "zoo"))

import build  # noqa: E402  (zoo/build.py)

MANIFEST = load_manifest(ZOO_DIR)
# the facts build.py records for every entry
FIELDS = ("file", "sha256", "size", "method", "backbone", "backbone_parameters", "dataset",
          "dataset_params", "command", "config", "overrides", "commit", "host", "torch",
          "linear_top1", "linear_top5", "linear_command", "knn_top1", "knn_command")


def test_every_model_is_shipped_and_verified():
    assert set(build.MODELS) <= set(MANIFEST)
    report = {name: status for name, status, _ in verify_all(ZOO_DIR)}
    assert all(report[name] == "ok" for name in build.MODELS), report
    for name in build.MODELS:
        entry = MANIFEST[name]
        assert set(FIELDS) <= set(entry), (name, set(FIELDS) - set(entry))
        path = os.path.join(ZOO_DIR, entry["file"])
        assert entry["size"] == os.path.getsize(path)
        assert entry["sha256"] == sha256sum(path)
    # "a few MB in all"
    assert sum(MANIFEST[n]["size"] for n in build.MODELS) < 8 * 2 ** 20


@pytest.mark.parametrize("name", sorted(build.MODELS))
def test_zoo_file_loads_into_its_backbone(name):
    from clinfonce_plugin.evaluate.pretrained import load_pretrained_backbone

    path = os.path.join(ZOO_DIR, MANIFEST[name]["file"])
    backbone, dim, pre_cfg = load_pretrained_backbone(path)
    assert pre_cfg.method == MANIFEST[name]["method"]
    assert pre_cfg.backbone.name == MANIFEST[name]["backbone"]
    saved = torch.load(path, weights_only=True)["state_dict"]
    own = backbone.state_dict()
    prefix = "backbone."
    # under solo-learn the same network sits inside a wrapper (keys "model.*")
    weights = fit_keys({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)},
                       own)
    assert set(weights) == set(own)
    for key, value in weights.items():
        assert torch.equal(own[key], value.to(own[key].dtype)), key
    trainable = sum(p.numel() for p in backbone.parameters())
    assert trainable == MANIFEST[name]["backbone_parameters"]
    # the backbone.pretrained= path (initialising a pretrain run) reads the same weights
    from clinfonce_plugin.run.checkpoints import load_backbone
    from clinfonce_plugin.host.backbone import make_backbone

    fresh, _ = make_backbone(pre_cfg)
    load_backbone(fresh, path, pre_cfg.backbone.name)
    assert all(torch.equal(v, own[k]) for k, v in fresh.state_dict().items())


@pytest.mark.slow
def test_main_linear_on_a_zoo_model_reproduces_the_manifest(tmp_path):
    """The issue's check: a fresh working directory (the benchmark data generated there) and
    the manifest's own command."""
    name = "clinfonce-synthetic_cub"
    command = MANIFEST[name]["linear_command"].split()
    assert command[:2] == ["python", "main_linear.py"]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "main_linear.py")] + command[2:]
                          + ["enable_progress_bar=false"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "trained_models" / "zoo" / f"linear-{name}.json") as f:
        result = json.load(f)
    assert result["top1"] == pytest.approx(MANIFEST[name]["linear_top1"], abs=0.06)
    assert os.path.isdir(tmp_path / "datasets" / "synthetic_cub_bench")
