"""The t-SNE pictures end to end: pretrain Cl-InfoNCE 1 epoch on the tiny synthetic CUB, draw
both pictures (valid PNGs of the figure's size, the cluster colouring equal to the attribute
clusters computed independently), refuse to overwrite them, the test split without a
cluster picture, and the command's config error."""
import csv
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.clusters.attributes import attribute_cluster_ids
from clinfonce_plugin.data.registry import build_dataset
from clinfonce_plugin.errors import OutputExists
from clinfonce_plugin.evaluate.embedding import plot_embedding
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K = 4


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def ckpt(tiny_cub, tmp_path_factory):
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", tiny_cub,
                            str(tmp_path_factory.mktemp("runs")), max_epochs=1)
    cfg.method_kwargs.clusters = {"provider": "attributes", "k": K}
    return pretrain(cfg)


def _cfg(ckpt, root, out, **keys):
    cfg = OmegaConf.create({"pretrained": ckpt, "output_dir": str(out),
                            "data": {"train_path": root, "num_workers": 0}})
    cfg.update(keys)
    return cfg


@pytest.mark.slow
def test_both_pictures_with_the_attribute_clusters(ckpt, tiny_cub, tmp_path, capsys):
    res = plot_embedding(_cfg(ckpt, tiny_cub, tmp_path, max_points=30, seed=1))
    paths = res["paths"]
    assert set(paths) == {"labels", "clusters", "table"}
    for kind in ("labels", "clusters"):
        assert _png_size(paths[kind]) == (1125, 900)  # 7.5 x 6 inches at 150 dpi
    # 30 of the 36 training images, 5 of each of the 6 classes
    assert len(res["index"]) == 30
    assert np.bincount(res["labels"]).tolist() == [5] * 6
    # the colouring: the attribute clusters of the pretrain config (k=4), computed here
    # from the split's attribute table
    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    reference, _ = attribute_cluster_ids(info.attributes, K)
    assert res["clusters"].tolist() == reference[res["index"]].tolist()
    with open(paths["table"]) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == res["index"].tolist()
    assert [int(r["cluster"]) for r in rows] == reference[res["index"]].tolist()
    assert [int(r["label"]) for r in rows] == info.labels[res["index"]].tolist()
    assert np.allclose([[float(r["x"]), float(r["y"])] for r in rows], res["xy"], rtol=1e-5)
    assert f"-> {paths['labels']}" in capsys.readouterr().out

    # the same call again: refused, the pictures untouched; with overwrite, set aside
    before = open(paths["labels"], "rb").read()
    with pytest.raises(OutputExists, match="tsne-clinfonce-synthetic_cub-train-labels.png"):
        plot_embedding(_cfg(ckpt, tiny_cub, tmp_path, max_points=30, seed=1))
    again = plot_embedding(_cfg(ckpt, tiny_cub, tmp_path, max_points=30, seed=1,
                                overwrite=True))
    kept = [p for p in os.listdir(tmp_path) if ".replaced-" in p]
    assert len(kept) == 3
    aside = [p for p in kept if p.startswith("tsne-clinfonce-synthetic_cub-train-labels.png")]
    assert open(tmp_path / aside[0], "rb").read() == before
    assert np.allclose(again["xy"], res["xy"])  # same seed, same picture


@pytest.mark.slow
def test_the_test_split_has_no_cluster_picture(ckpt, tiny_cub, tmp_path, capsys):
    res = plot_embedding(_cfg(ckpt, tiny_cub, tmp_path, split="test", classes=2))
    assert set(res["paths"]) == {"labels", "table"} and res["clusters"] is None
    assert len(np.unique(res["labels"])) == 2 and len(res["index"]) == 12
    assert "note: no cluster picture: cluster ids exist for the training split only" \
        in capsys.readouterr().out
    assert _png_size(res["paths"]["labels"])[0] == 1125
    assert not os.path.exists(os.path.join(tmp_path, "tsne-clinfonce-synthetic_cub-test-"
                                                     "clusters.png"))


def test_plot_embedding_reports_a_bad_key_with_exit_2():
    proc = subprocess.run([sys.executable, "-m", "clinfonce_plugin.plot_embedding",
                           "pretrained=x.ckpt", "max_point=10"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: command line (max_point=10): max_point: unknown key")
    assert "Traceback" not in proc.stderr
