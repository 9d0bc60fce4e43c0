"""A tiny end-to-end PCL run through the real runner: synthetic CUB (CUB layout on disk) ->
pretrain pcl with two granularities, one warm-up epoch of the instance term, then ProtoNCE ->
resume (clusters and concentrations come back, no recluster off the schedule) -> linear
evaluation."""
import csv
import os

import pytest
import torch

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg


def _cfg(root, out_dir, name, max_epochs, resume=None):
    cfg = yaml_pretrain_cfg("pcl_synthetic_cub", "symmetric_32", root, out_dir, max_epochs)
    cfg.name = name
    cfg.scheduler.warmup_epochs = 1
    cfg.method_kwargs.clusters.k = [5, 3]
    cfg.method_kwargs.clusters.warmup_epochs = 1
    cfg.method_kwargs.clusters.period = 2
    cfg.method_kwargs.clusters.nredo = 2
    cfg.resume_from_checkpoint = resume
    return cfg


def _rows(ckpt):
    with open(os.path.join(os.path.dirname(ckpt), "logs", "metrics.csv")) as f:
        return list(csv.DictReader(f))


def _epochs_with(rows, key):
    return sorted({int(r["epoch"]) for r in rows if r.get(key)})


@pytest.mark.slow
def test_pcl_warmup_then_protonce_resume_then_linear(tiny_cub, tmp_path):
    out = str(tmp_path / "runs")
    first = pretrain(_cfg(tiny_cub, out, "first", 2))
    state = safe_load(first)["state_dict"]
    # clustered once, before epoch 1 (the end of the warm-up), both granularities
    assert int(state["provider.refresh_epoch"]) == 1
    for m, (suffix, k) in enumerate((("", 5), ("_1", 3))):
        ids = state[f"provider.ids{suffix}"]
        clusters = len(torch.unique(ids))
        assert 1 < clusters <= k and int(ids.max()) + 1 == clusters
        phi = state[f"concentration{suffix}"]
        assert phi.shape == (k,) and (phi[:clusters] > 0).all()
        # PCL's scaling: the mean concentration of the clusters is the temperature
        assert phi[:clusters].mean().item() == pytest.approx(0.1, rel=1e-5)
    rows = _rows(first)
    assert _epochs_with(rows, "train_instance_loss_epoch") == [0, 1]
    assert _epochs_with(rows, "train_proto_loss_epoch") == [1]  # after the warm-up only
    assert _epochs_with(rows, "kmeans_mi_1") == [1]
    assert _epochs_with(rows, "pcl_concentration_max_1") == [1]

    # resumed to 3 epochs: epoch 2 is off the schedule (1 + period 2): state kept
    second = pretrain(_cfg(tiny_cub, out, "second", 3, resume=first))
    kept = safe_load(second)["state_dict"]
    for key in ("provider.ids", "provider.ids_1", "provider.centroids_1", "concentration",
                "concentration_1", "provider.refresh_epoch"):
        assert torch.equal(kept[key], state[key]), key
    rows = _rows(second)
    assert _epochs_with(rows, "train_proto_loss_epoch") == [2]
    assert _epochs_with(rows, "kmeans_mi") == []

    res = linear_eval(yaml_linear_cfg("clinfonce_synthetic_cub", second, tiny_cub,
                                      max_epochs=2))
    assert 0.0 <= res["top1"] <= 100.0
