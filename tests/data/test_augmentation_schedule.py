"""The augmentation schedule (``warmup_augmentations`` while epoch < N): the pipeline a
dataloader worker applies at epochs N-1 and N, with persistent workers, for the default
index wrapping and for WCL's KNN multi-crop, through the real runner, and on resume."""
import os
import shutil

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from clinfonce_plugin.config import ConfigError, check_pretrain_cfg
from clinfonce_plugin import host
from clinfonce_plugin.data.augmentation_schedule import EpochClock, ScheduledTransform
from clinfonce_plugin.data.indexed import IndexedDataset
from clinfonce_plugin.data.registry import DATASETS
from clinfonce_plugin.run.pretrain import pretrain
from tests.conftest import augmentation
from tests.helpers import yaml_pretrain_cfg


class Tag:
    """A transform returning (its tag, the pid of the process that ran it)."""

    def __init__(self, tag: int) -> None:
        self.tag = tag

    def __call__(self, x):
        return [torch.tensor([self.tag, os.getpid()])]


class Blank(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return None, i


def test_scheduled_transform_switches_at_the_given_epoch():
    clock = EpochClock()
    t = ScheduledTransform(Tag(1), Tag(2), switch_epoch=3, clock=clock)
    with pytest.raises(RuntimeError, match="never set"):
        t(None)
    for epoch, tag in ((0, 1), (2, 1), (3, 2), (7, 2)):
        clock.set(epoch)
        assert int(t(None)[0][0]) == tag
    with pytest.raises(ValueError, match="switch_epoch must be >= 1, got 0"):
        ScheduledTransform(Tag(1), Tag(2), switch_epoch=0, clock=clock)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        clock.set(-1)


def test_a_persistent_worker_sees_the_switch_set_by_the_main_process():
    clock = EpochClock()
    clock.set(0)
    ds = IndexedDataset(Blank(), ScheduledTransform(Tag(1), Tag(2), switch_epoch=2,
                                                    clock=clock))
    loader = DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True)
    seen = {}
    for epoch in range(4):
        clock.set(epoch)  # what the runner's callback does before each epoch's iterator
        (_, [crops], _), = list(loader)
        seen[epoch] = (set(crops[:, 0].tolist()), set(crops[:, 1].tolist()))
    tags = {epoch: tag for epoch, (tag, _) in seen.items()}
    assert tags == {0: {1}, 1: {1}, 2: {2}, 3: {2}}
    pids = set().union(*(pid for _, pid in seen.values()))
    assert len(pids) == 1 and os.getpid() not in pids  # one persistent worker did it all


# ------------------------------------------------------------------ config checks
def _cfg(**top):
    cfg = OmegaConf.create({
        "method": "simclr", "backbone": {"name": "test_resnet"},
        "data": {"dataset": "synthetic_cub", "train_path": "x"},
        "optimizer": {"name": "sgd", "batch_size": 4, "lr": 0.1},
        "max_epochs": 5, "augmentations": [augmentation(32, 2), augmentation(16, 2)]})
    cfg.update(top)
    return cfg


def test_config_checks_the_warmup_list_like_augmentations():
    def check(cfg):
        return check_pretrain_cfg(cfg, DATASETS, host.METHODS)

    good = check(_cfg(warmup_augmentations=[augmentation(32, 2), augmentation(16, 2)],
                      warmup_augmentation_epochs=2))
    assert good.warmup_augmentations[1].rrc.crop_max_scale == 1.0  # defaults filled
    assert check(_cfg()).warmup_augmentation_epochs == 0
    with pytest.raises(ConfigError, match=r"warmup_augmentations: must give the same crops "
                       r"as augmentations.*expected \[\(32, 2\), \(16, 2\)\], got \[\(32, 2\), "
                       r"\(16, 6\)\]"):
        check(_cfg(warmup_augmentations=[augmentation(32, 2), augmentation(16, 6)],
                   warmup_augmentation_epochs=2))
    bad = augmentation(32, 2)
    bad["rrc"]["crop_min_scale"] = 0.9
    bad["rrc"]["crop_max_scale"] = 0.5
    with pytest.raises(ConfigError, match=r"warmup_augmentations\[0\].rrc.crop_min_scale: "
                       r"must not exceed"):
        check(_cfg(warmup_augmentations=[bad, augmentation(16, 2)],
                   warmup_augmentation_epochs=2))
    bad = augmentation(32, 2)
    bad["colour"] = 1
    with pytest.raises(ConfigError, match=r"warmup_augmentations\[0\].colour: unknown key"):
        check(_cfg(warmup_augmentations=[bad, augmentation(16, 2)],
                   warmup_augmentation_epochs=2))
    with pytest.raises(ConfigError, match="warmup_augmentation_epochs: is 3 but "
                       "warmup_augmentations is not set"):
        check(_cfg(warmup_augmentation_epochs=3))
    with pytest.raises(ConfigError, match="warmup_augmentations: is set but "
                       "warmup_augmentation_epochs is 0"):
        check(_cfg(warmup_augmentations=[augmentation(32, 2), augmentation(16, 2)]))
    with pytest.raises(ConfigError, match=r"warmup_augmentation_epochs: must be smaller than "
                       r"max_epochs \(5\), got 5"):
        check(_cfg(warmup_augmentations=[augmentation(32, 2), augmentation(16, 2)],
                   warmup_augmentation_epochs=5))


# ------------------------------------------------------------------ the real runner
# The two pipelines normalise differently, so every crop says which one made it: pixels in
# [0, 1] minus mean 1 are <= 0 (warm-up), minus mean 0 are >= 0 (normal).
def _signed(pipelines, mean):
    out = OmegaConf.create(OmegaConf.to_container(pipelines))
    for aug in out:
        aug.mean, aug.std = [mean] * 3, [1.0, 1.0, 1.0]
    return out


class CropSigns(pl.Callback):
    """(epoch, per crop: "warmup" | "normal") of every training batch."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        kinds = []
        for crop in batch[1]:
            if crop.max() <= 0 and crop.min() < 0:
                kinds.append("warmup")
            elif crop.min() >= 0 and crop.max() > 0:
                kinds.append("normal")
            else:
                kinds.append("mixed")
        self.seen.append((trainer.current_epoch, kinds))

    def epochs(self):
        out = {}
        for epoch, kinds in self.seen:
            out.setdefault(epoch, set()).update(kinds)
        return out


def _run(config, augs, root, out, max_epochs, switch, resume=None):
    cfg = yaml_pretrain_cfg(config, augs, root, out, max_epochs)
    cfg.augmentations = _signed(cfg.augmentations, 0.0)
    cfg.warmup_augmentations = _signed(cfg.augmentations, 1.0)
    cfg.warmup_augmentation_epochs = switch
    cfg.data.num_workers = 1  # the crops are made in a (persistent) worker process
    cfg.scheduler.warmup_epochs = 1
    if "knn_warmup_epochs" in cfg.method_kwargs:
        cfg.method_kwargs.knn_warmup_epochs = 1
        cfg.method_kwargs.knn_k = 3
    cfg.resume_from_checkpoint = resume
    cfg.overwrite = resume is not None
    signs = CropSigns()
    ckpt = pretrain(cfg, callbacks=[signs])
    return ckpt, signs


@pytest.mark.slow
@pytest.mark.parametrize("config,augs,crops", [
    ("clinfonce_synthetic_cub", "symmetric_32", 2),
    ("wcl_synthetic_cub", "wcl_multicrop_32", 4),  # KNN multi-crop: 2 large + 2 small crops
])
def test_runner_switches_pipelines_at_the_epoch_and_on_resume(tiny_cub, tmp_path, config,
                                                              augs, crops):
    out = str(tmp_path / "runs")
    ckpt, signs = _run(config, augs, tiny_cub, out, max_epochs=2, switch=1)
    assert signs.epochs() == {0: {"warmup"}, 1: {"normal"}}  # epochs N-1 and N, N = 1
    # judged on every crop of every batch, large and small (with KNN multi-crop active at
    # epoch 1, the small crops come from neighbours and still follow the schedule)
    assert len(signs.seen) == 6 and all(len(kinds) == crops for _, kinds in signs.seen)

    resume = str(tmp_path / "resume.ckpt")  # its epochs 0 and 1 are done
    shutil.copy(os.path.join(os.path.dirname(ckpt), "last.ckpt"), resume)
    # resumed at epoch 2 >= N = 1: the normal pipeline from the first resumed batch
    _, signs = _run(config, augs, tiny_cub, out, max_epochs=3, switch=1, resume=resume)
    assert signs.epochs() == {2: {"normal"}}
    if config.startswith("wcl"):
        return  # the resume logic does not depend on the dataset type: tested once
    # resumed at epoch 2 < N = 3: the warm-up pipeline until epoch 3
    _, signs = _run(config, augs, tiny_cub, out, max_epochs=4, switch=3, resume=resume)
    assert signs.epochs() == {2: {"warmup"}, 3: {"normal"}}


def test_an_error_in_the_warmup_file_names_that_file_and_line(tmp_path):
    """``- augmentations@warmup_augmentations: <file>`` in defaults: the CLI maps the
    package back to the augmentation file for error locations."""
    import subprocess
    import sys

    import yaml

    (tmp_path / "augmentations").mkdir()
    good = [augmentation(32, 2)]
    bad = [augmentation(32, 2)]
    bad[0]["colour"] = 1
    (tmp_path / "augmentations" / "good.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "augmentations" / "weak.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "run_synthetic_cub.yaml").write_text(
        "defaults:\n  - _self_\n  - augmentations: good.yaml\n"
        "  - augmentations@warmup_augmentations: weak.yaml\n"
        "method: simclr\nbackbone:\n  name: test_resnet\n"
        "data:\n  dataset: synthetic_cub\n  train_path: x\n"
        "optimizer:\n  name: sgd\n  batch_size: 4\n  lr: 0.1\n"
        "max_epochs: 3\nwarmup_augmentation_epochs: 1\n")
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom clinfonce_plugin import host\n"
        "from clinfonce_plugin.cli import hydra_main\n"
        "from clinfonce_plugin.config import check_pretrain_cfg\n"
        "from clinfonce_plugin.data.registry import DATASETS\n"
        f"hydra_main({str(tmp_path)!r}, lambda cfg, src: check_pretrain_cfg(cfg, DATASETS, "
        "host.METHODS, src))\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, str(script), "--config-name", "run_synthetic_cub.yaml"],
                         capture_output=True, text=True, cwd=tmp_path,  # hydra writes outputs/ here
                         env={**os.environ, "PYTHONPATH": repo})
    weak = tmp_path / "augmentations" / "weak.yaml"
    line = next(i for i, text in enumerate(weak.read_text().splitlines(), 1)
                if text.startswith("  colour:"))
    assert out.returncode == 2, out.stderr
    assert f"{weak}:{line}: warmup_augmentations[0].colour: unknown key" in out.stdout + out.stderr
