"""kNN evaluation end to end: pretrain 1 epoch on the tiny synthetic CUB, then main_knn's job
in-process (backbone and projector rows, clustering scores, JSON beside the checkpoint, k
clipped to the training set), its projector rows against the trained method's own forward;
and the entry point's errors (a bad key, a checkpoint without projector)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.data.indexed import TransformedImages
from clinfonce_plugin.data.registry import open_split
from clinfonce_plugin.data.transforms import eval_transform
from clinfonce_plugin.evaluate.knn import knn_eval
from clinfonce_plugin.metrics.knn import weighted_knn_accuracy
from clinfonce_plugin.run.pretrain import build_method, prepare_cfg, pretrain
from tests.helpers import yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _knn_cfg(ckpt, root):
    cfg = OmegaConf.load(os.path.join(REPO, "scripts/knn/clinfonce_synthetic_cub.yaml"))
    cfg.pop("defaults")
    cfg.pop("hydra")
    cfg.pretrained, cfg.data.train_path, cfg.data.num_workers = ckpt, root, 0
    return cfg


def _method_features(ckpt, split, root):
    """(projector outputs, labels) of a split from the trained method itself: the whole
    method rebuilt from args.json, the whole state_dict loaded strictly, its own forward."""
    pre = OmegaConf.create(json.load(open(os.path.join(os.path.dirname(ckpt), "args.json"))))
    model = build_method(pre)
    model.load_state_dict(safe_load(ckpt)["state_dict"], strict=True)
    model.eval()
    images = TransformedImages(open_split(pre.data, split, root=root).dataset,
                               eval_transform(pre))
    x = torch.stack([images[i][0] for i in range(len(images))])
    y = torch.tensor([images[i][1] for i in range(len(images))])
    with torch.no_grad():
        return model(x)["z"], y


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
    assert [(r["feature"], r["distance"], r["k"]) for r in res["rows"]] == \
        [(f, d, k) for f in ("backbone", "projector") for d in ("cosine", "euclidean")
         for k in (10, 20, 36)]
    assert res["num_train"] == 36 and res["num_test"] == 36
    assert res["projector_dim"] == 128  # proj_output_dim of the config
    for r in res["rows"]:
        assert 0.0 <= r["top1"] <= r["top5"] <= 100.0
        # whole images out of 36
        assert r["top1"] * 36 / 100 == pytest.approx(round(r["top1"] * 36 / 100))
    # k-means into the 6 classes of the 36 training images, each feature type
    assert [(c["feature"], c["split"], c["k"]) for c in res["clustering"]] == \
        [("backbone", "train", 6), ("projector", "train", 6)]
    for c in res["clustering"]:
        assert 0.0 <= c["nmi"] <= 1.0
        assert c["acc"] * 36 / 100 == pytest.approx(round(c["acc"] * 36 / 100))
        assert 100.0 / 6 <= c["acc"] <= 100.0  # the best matching beats the smallest class
    saved = json.load(open(os.path.join(os.path.dirname(ckpt), "knn-clinfonce-synthetic_cub.json")))
    assert saved["rows"] == res["rows"] and saved["temperature"] == 0.07
    assert saved["clustering"] == res["clustering"]
    assert "backbone  cosine        10" in out and "projector euclidean     36" in out
    assert "backbone  train      6" in out

    # the projector rows are the kNN of the trained method's own projector outputs
    z_tr, y_tr = _method_features(ckpt, "train", tiny_cub)
    z_te, y_te = _method_features(ckpt, "test", tiny_cub)
    for distance in ("cosine", "euclidean"):
        ref = weighted_knn_accuracy(z_tr, y_tr, z_te, y_te, [10, 20, 36], distance, 0.07, 6,
                                    10**6)
        got = {r["k"]: (r["top1"], r["top5"]) for r in res["rows"]
               if r["feature"] == "projector" and r["distance"] == distance}
        # whole images out of 36: equal features give equal counts
        assert got == ref


def test_main_knn_reports_unknown_key():
    proc = subprocess.run([sys.executable, "main_knn.py", "--config-name",
                           "clinfonce_synthetic_cub.yaml", "temprature=0.1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: command line (temprature=0.1): temprature: unknown key")
    assert "Traceback" not in proc.stderr


def test_main_knn_refuses_a_checkpoint_without_projector(tiny_cub, tmp_path):
    """A backbone-only file under the default feature_type [backbone, projector]: one error
    line that says how to evaluate the backbone alone, exit 2."""
    cfg = prepare_cfg(yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", tiny_cub,
                                        str(tmp_path)))
    model = build_method(cfg)
    path = tmp_path / "backbone_only.ckpt"
    torch.save({"state_dict": {k: v for k, v in model.state_dict().items()
                               if k.startswith("backbone.")}}, path)
    with open(tmp_path / "args.json", "w") as f:
        json.dump(OmegaConf.to_container(cfg, resolve=True), f)
    proc = subprocess.run([sys.executable, "main_knn.py", "--config-name",
                           "simclr_synthetic_cub.yaml", f"pretrained={path}",
                           "data.num_workers=0"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path} has no 'projector.*' weights (method simclr): evaluate "
                      f"the backbone alone with feature_type=[backbone]"]
    # the advice works
    knn = _knn_cfg(str(path), tiny_cub)
    knn.feature_type = ["backbone"]
    knn.output_dir = str(tmp_path / "out")
    res = knn_eval(knn)
    assert {r["feature"] for r in res["rows"]} | {c["feature"] for c in res["clustering"]} == \
        {"backbone"}
    assert "projector_dim" not in res


def test_projector_of_a_clinfonce_run_whose_data_moved(tiny_cub, tmp_path):
    """The method is rebuilt on the evaluation's split of the same dataset: the pretrain
    run's path is no longer read."""
    moved = tmp_path / "before"
    shutil.copytree(tiny_cub, moved)
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", str(moved), str(tmp_path))
    cfg.method_kwargs.clusters = {"provider": "attributes", "k": 4}
    cfg = prepare_cfg(cfg)
    torch.manual_seed(3)
    model = build_method(cfg)
    path = tmp_path / "clinfonce.ckpt"
    torch.save({"state_dict": model.state_dict()}, path)
    with open(tmp_path / "args.json", "w") as f:
        json.dump(OmegaConf.to_container(cfg, resolve=True), f)
    shutil.rmtree(moved)
    knn = _knn_cfg(str(path), tiny_cub)
    knn.feature_type, knn.clustering = ["projector"], {"enabled": False}
    knn.output_dir = str(tmp_path / "out")
    res = knn_eval(knn)
    assert {r["feature"] for r in res["rows"]} == {"projector"} and res["projector_dim"] == 128
