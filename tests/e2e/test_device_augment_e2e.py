"""Tiny pretrain runs with ``data.augment_on: device`` through the real runner: a two-view
method (clinfonce) and WCL's KNN multi-crop with crops of two sizes (32 and 16 px). The
workers hand over uint8 crops; training_step sees the augmented float crops."""
import os

import pytest
import torch

from clinfonce_plugin import host
from clinfonce_plugin.augment.device import DeviceAugmentation
from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.data.knn_multicrop import NeighbourTable
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_pretrain_cfg


def _spy(monkeypatch, method):
    """Records (crops given to the callback, crops seen by training_step) per step."""
    seen = {"augmented": [], "trained": []}
    augment = DeviceAugmentation.augment

    def spy_augment(self, crops, epoch, batch_idx, rank=0):
        seen["augmented"].append([(c.dtype, tuple(c.shape)) for c in crops])
        return augment(self, crops, epoch, batch_idx, rank)

    cls = host.METHODS[method]
    step = cls.training_step

    def spy_step(self, batch, batch_idx):
        seen["trained"].append([(c.dtype, tuple(c.shape)) for c in batch[1]])
        return step(self, batch, batch_idx)

    monkeypatch.setattr(DeviceAugmentation, "augment", spy_augment)
    monkeypatch.setattr(cls, "training_step", spy_step)
    return seen


@pytest.mark.slow
def test_two_view_pretrain_with_augmentation_on_the_device(tiny_cub, tmp_path, monkeypatch):
    seen = _spy(monkeypatch, "clinfonce")
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", tiny_cub,
                            str(tmp_path), max_epochs=1)
    cfg.data.augment_on = "device"
    ckpt = pretrain(cfg)
    assert os.path.isfile(ckpt)
    assert safe_load(ckpt)["state_dict"]  # a trained checkpoint
    # 36 training images, batches of 12: three steps
    assert seen["augmented"] == [[(torch.uint8, (12, 3, 32, 32))] * 2] * 3
    assert seen["trained"] == [[(torch.float32, (12, 3, 32, 32))] * 2] * 3


@pytest.mark.slow
def test_wcl_knn_multicrop_with_two_crop_sizes_on_the_device(tiny_cub, tmp_path, monkeypatch):
    seen = _spy(monkeypatch, "wcl")
    active = []
    sources = NeighbourTable.sources

    def spy_sources(self, index, num, seed=0):
        active.append((self.epoch, self.active))
        return sources(self, index, num, seed)

    monkeypatch.setattr(NeighbourTable, "sources", spy_sources)
    cfg = yaml_pretrain_cfg("wcl_synthetic_cub", "wcl_multicrop_32", tiny_cub, str(tmp_path),
                            max_epochs=2)
    cfg.scheduler.warmup_epochs = 1
    cfg.method_kwargs.knn_warmup_epochs = 1
    cfg.method_kwargs.knn_k = 3
    cfg.data.augment_on = "device"
    ckpt = pretrain(cfg)
    assert bool(safe_load(ckpt)["state_dict"]["knn.valid"])
    # epoch 1 drew its small crops from the neighbour table
    assert {a for e, a in active if e == 1} == {True}
    sizes = [(3, 32, 32)] * 2 + [(3, 16, 16)] * 2
    assert seen["augmented"] == [[(torch.uint8, (12, *s)) for s in sizes]] * 6
    assert seen["trained"] == [[(torch.float32, (12, *s)) for s in sizes]] * 6
