"""End to end on the user's own data (``custom``): class folders + an annotations CSV ->
one epoch of clinfonce with attribute clusters -> linear evaluation; unlabelled folders
train with attribute clusters and SimCLR, and every labels-based use refuses them before
training; the entry point turns a bad CSV into one ``error:`` line."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clinfonce_plugin.errors import ConfigError, DataError
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.evaluate.select_k import run_select_k
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLORS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def _image(path, color, stripes, seed):
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
    if stripes:
        pixels[::4] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def custom_data(tmp_path_factory):
    """Two class folders (16 + 16 images of 32 px, PNG and JPEG) and annotations.csv with
    label, split (24 train / 8 test) and three attribute columns (binary, categorical,
    multi-valued); a flat copy of the images with an attributes-only CSV."""
    base = tmp_path_factory.mktemp("custom")
    root, flat = base / "images", base / "flat"
    rows = []
    for c, cls in enumerate(["gull", "tern"]):
        for i in range(16):
            color = list(COLORS)[(i + c) % 3]
            stripes = int(i % 2 == c)
            ext = "png" if i % 4 else "jpg"
            rel = f"{cls}/{i:02d}.{ext}"
            _image(root / rel, COLORS[color], stripes, seed=100 * c + i)
            _image(flat / f"{cls}_{i:02d}.{ext}", COLORS[color], stripes, seed=100 * c + i)
            tags = "sea;rock" if i % 3 == 0 else "sea"
            rows.append([rel, cls, "test" if i % 4 == 3 else "train", stripes, color, tags])
    with open(root / "annotations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split", "stripes", "color", "tags"])
        writer.writerows(rows)
    with open(flat / "attributes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "stripes", "color"])
        writer.writerows([[r[0].replace("/", "_"), r[3], r[4]] for r in rows])
    return str(root), str(flat)


def _cfg(config, root, out_dir, annotations, **overrides):
    cfg = yaml_pretrain_cfg(config, "symmetric_32", root, out_dir, max_epochs=1)
    cfg.data.dataset = "custom"
    cfg.data.annotations = annotations
    if cfg.method == "cluster_ce":  # no projector: the helper's projector size does not apply
        cfg.method_kwargs.pop("proj_hidden_dim")
    for key, value in overrides.items():
        node, leaf = cfg, key.split(".")
        for part in leaf[:-1]:
            node = node[part]
        node[leaf[-1]] = value
    return cfg


@pytest.mark.slow
def test_custom_csv_clinfonce_pretrain_then_linear(custom_data, tmp_path):
    root, flat = custom_data
    cfg = _cfg("clinfonce_custom", root, str(tmp_path), "annotations.csv",
               **{"method_kwargs.clusters.k": 3})
    ckpt = pretrain(cfg)
    run_dir = os.path.dirname(ckpt)
    args = json.load(open(os.path.join(run_dir, "args.json")))
    assert args["data"]["dataset"] == "custom" and args["data"]["num_classes"] == 2
    assert args["backbone"]["name"] == "resnet18"
    log = open(os.path.join(run_dir, "logs", "metrics.csv")).read().splitlines()
    header = log[0].split(",")
    values = [r for r in log[1:] if r.split(",")[header.index("train_clinfonce_loss_epoch")]]
    loss = float(values[-1].split(",")[header.index("train_clinfonce_loss_epoch")])
    assert np.isfinite(loss) and loss > 0

    # linear evaluation inherits train_path's CSV (label + split columns) from the run
    res = linear_eval(yaml_linear_cfg("clinfonce_custom", ckpt, root, max_epochs=2))
    assert res["num_train"] == 24 and res["num_test"] == 8 and res["dataset"] == "custom"
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0

    # the same checkpoint on unlabelled images: refused before the probe trains
    lin = yaml_linear_cfg("clinfonce_custom", ckpt, flat)
    lin.data.annotations = "attributes.csv"
    with pytest.raises(DataError, match=rf"linear evaluation needs a label for every image, but "
                                        rf"the custom train split at {flat} has no labels: put "
                                        r"the images in class folders \(<root>/<class>/<image>\) "
                                        r"or add a 'label' column to data.annotations"):
        linear_eval(lin)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["clinfonce_custom", "simclr_synthetic_cub"])
def test_unlabelled_folder_trains_with_attributes_and_simclr(custom_data, tmp_path, config):
    _, flat = custom_data
    # accelerator auto: on this CPU machine a device count (solo-learn makes devices a list)
    cfg = _cfg(config, flat, str(tmp_path), "attributes.csv", accelerator="auto",
               **{"backbone.name": "test_resnet"})
    if config == "clinfonce_custom":
        cfg.method_kwargs.clusters.k = 2
    ckpt = pretrain(cfg)  # the FiniteLoss callback stops a run whose loss is not finite
    assert os.path.isfile(ckpt)
    args = json.load(open(os.path.join(os.path.dirname(ckpt), "args.json")))
    assert args["data"]["num_classes"] == 1  # the probe's one output, never trained


@pytest.mark.parametrize("config, overrides, error, pattern", [
    ("clinfonce_custom", {"data.val_path": "SAME"}, DataError,
     r"the online linear probe \(data.val_path is set\) needs a label for every image, but the "
     r"custom train split at .* has no labels: .*; or leave data.val_path unset"),
    ("supcon_synthetic_cub", {}, DataError,
     r"method supcon needs a label for every image, but the custom train split .* has no labels"),
    ("clinfonce_custom", {"method_kwargs.clusters": {"provider": "labels"}}, ConfigError,
     r"method clinfonce: labels: no sample has a label \(all 32 are -1, unknown\)"),
    ("cluster_ce_synthetic_cub", {"method_kwargs.clusters": {"provider": "labels"}}, ConfigError,
     r"method cluster_ce: labels: no sample has a label"),
])
def test_labels_based_uses_refuse_unlabelled_data(custom_data, tmp_path, config, overrides,
                                                  error, pattern):
    _, flat = custom_data
    overrides = {k: (flat if v == "SAME" else v) for k, v in overrides.items()}
    cfg = _cfg(config, flat, str(tmp_path), "attributes.csv", **{"backbone.name": "test_resnet"},
               **overrides)
    with pytest.raises(error, match=pattern):
        pretrain(cfg)
    assert not os.listdir(tmp_path)  # stopped before any run directory was made


def test_main_pretrain_reports_a_bad_csv_as_one_error_line(custom_data, tmp_path):
    root, _ = custom_data
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,split\ngull/01.png,gull,train\ngull/02.png,gull,valid\n")
    proc = subprocess.run(
        [sys.executable, "main_pretrain.py", "--config-name", "clinfonce_custom.yaml",
         f"data.train_path={root}", f"data.annotations={bad}", f"checkpoint.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: data.dataset=custom: {bad}:3: column 'split': 'valid', expected "
                      f"'train' or 'test'"]
    assert "Traceback" not in proc.stderr


def test_select_k_sweeps_csv_attributes_and_refuses_unlabelled_data(custom_data, tmp_path):
    root, flat = custom_data
    cfg = _cfg("clinfonce_custom", root, str(tmp_path), "annotations.csv")
    cfg.select_k = {"plot": False}
    result = run_select_k(cfg)
    # 6 binary columns: stripes, color::blue/green/red, tags::rock/sea
    assert list(result.ks) == [1, 2, 3, 4, 5, 6]
    assert int(result.num_clusters[0]) == 2  # k=1: stripes (1 bit: 12 of the 24 train rows)
    cfg = _cfg("clinfonce_custom", flat, str(tmp_path), "attributes.csv")
    cfg.select_k = {"plot": False}
    with pytest.raises(DataError, match=rf"select_k: dataset 'custom' at {flat} provides no "
                                        r"labels, .*: put the images in class folders"):
        run_select_k(cfg)
