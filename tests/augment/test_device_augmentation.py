"""The training process's side of ``data.augment_on: device``: pipelines built with the
runtime's normalisation and blur range, the callback rewriting the crops of a batch in
place (seeded per rank, epoch and batch; the warm-up pipelines while they apply; the
precision plugin's dtype), and the config key."""
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.precision import HalfPrecision, Precision
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.augment.batched import SIGMA_RANGE
from clinfonce_plugin.augment.device import (DeviceAugmentation, batch_seed, batched_pipeline,
                                             blur_kernel_size, crop_augmenter)
from clinfonce_plugin.config import ConfigError, check_pretrain_cfg
from clinfonce_plugin.data.registry import DATASETS
from clinfonce_plugin.host.runtime.augmentations import (GaussianBlur, ToNormalizedTensor,
                                                         build_transform_pipeline)
from tests.conftest import augmentation


def _runtime_ops(dataset, node):
    """(ToNormalizedTensor, GaussianBlur) of the runtime's CPU pipeline of ``node``."""
    ops = build_transform_pipeline(dataset, node).transforms
    normalize = next(op for op in ops if isinstance(op, ToNormalizedTensor))
    blur = next(op.op for op in ops if isinstance(getattr(op, "op", None), GaussianBlur))
    return normalize, blur


@pytest.mark.parametrize("dataset, extra", [
    ("cifar10", {}), ("synthetic_cub", {}),
    ("synthetic_cub", {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}),
    ("cifar100", {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}),  # the dataset's wins
])
@pytest.mark.parametrize("crop_size", [16, 96, 224])
def test_normalisation_and_blur_range_are_the_runtime_pipelines(dataset, extra, crop_size):
    node = augmentation(crop_size, 2)
    node["gaussian_blur"] = {"prob": 0.5}
    node.update(extra)
    node = OmegaConf.create(node)
    normalize, blur = _runtime_ops(dataset, node)
    pipe = batched_pipeline(dataset, node)
    assert pipe.mean == pytest.approx(normalize.mean)
    assert pipe.std == pytest.approx(normalize.std)
    assert blur.sigma == pytest.approx((0.1, 2.0)) == SIGMA_RANGE
    # +-3 sigma_max taps: 13 at sigma 2, whatever the crop (all three crops are larger)
    assert pipe.blur_kernel == 13
    cj = node.color_jitter
    assert pipe.color_jitter == (cj.prob, cj.brightness, cj.contrast, cj.saturation, cj.hue)


@pytest.mark.parametrize("crop, sigma_max, taps", [(224, 2.0, 13), (32, 2.0, 13),
                                                   (12, 2.0, 11), (9, 2.0, 9), (2, 2.0, 1),
                                                   (224, 0.5, 5), (224, 1.1, 9)])
def test_blur_kernel_size_covers_three_sigma_within_the_crop(crop, sigma_max, taps):
    assert blur_kernel_size(crop, sigma_max) == taps


def test_the_blur_kernel_holds_the_gaussian_to_three_sigma():
    # at sigma 2 the 13 taps (+-3.25 sigma) keep 99.9 % of the continuous Gaussian's mass
    from scipy.stats import norm

    half = blur_kernel_size(224) // 2
    assert norm.cdf(half + 0.5, scale=2.0) - norm.cdf(-half - 0.5, scale=2.0) > 0.998


def _batch(sizes=(12, 12, 6), n=4):
    g = torch.Generator().manual_seed(0)
    crops = [torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8) for s in sizes]
    return [torch.arange(n), crops, torch.zeros(n, dtype=torch.long)]


def _trainer(epoch=0, rank=0, precision=None):
    return SimpleNamespace(current_epoch=epoch, global_rank=rank,
                           precision_plugin=precision or Precision())


def _callback(**kwargs):
    nodes = [OmegaConf.create(augmentation(12, 2)), OmegaConf.create(augmentation(6, 1))]
    return DeviceAugmentation(crop_augmenter("synthetic_cub", nodes), seed=5, **kwargs), nodes


def test_callback_replaces_the_crops_in_place_with_the_seeded_augmentation():
    callback, nodes = _callback()
    batch = _batch()
    crops, uint8 = batch[1], [c.clone() for c in batch[1]]
    callback.on_train_batch_start(_trainer(epoch=3, rank=1), None, batch, 7)
    assert batch[1] is crops  # the list training_step receives
    assert [(c.dtype, tuple(c.shape)) for c in crops] == \
        [(torch.float32, (4, 3, 12, 12))] * 2 + [(torch.float32, (4, 3, 6, 6))]
    g = torch.Generator().manual_seed(batch_seed(5, 1, 3, 7))
    expected = crop_augmenter("synthetic_cub", nodes)(uint8, g)
    for got, want in zip(crops, expected):
        assert torch.equal(got, want)


def test_the_same_rank_epoch_and_batch_give_the_same_crops_and_others_differ():
    callback, _ = _callback()

    def run(epoch, rank, idx):
        batch = _batch()
        callback.on_train_batch_start(_trainer(epoch, rank), None, batch, idx)
        return torch.cat([c.flatten() for c in batch[1]])

    base = run(2, 0, 4)
    assert torch.equal(base, run(2, 0, 4))
    for other in [(2, 1, 4), (3, 0, 4), (2, 0, 5)]:
        assert not torch.equal(base, run(*other)), other
    # seeds of nearby (seed, rank) pairs are unrelated (not seed + rank)
    assert batch_seed(5, 1, 0, 0) != batch_seed(6, 0, 0, 0)


def test_warmup_pipelines_apply_before_the_switch_epoch():
    weak = [OmegaConf.create(augmentation(12, 2)), OmegaConf.create(augmentation(6, 1))]
    for node in weak:
        node.color_jitter.prob = node.grayscale.prob = node.horizontal_flip.prob = 0.0
    callback, _ = _callback(warmup=crop_augmenter("synthetic_cub", weak), warmup_epochs=2)
    plain_crops = [c.float() / 255 for c in _batch()[1]]  # no random op at all
    for epoch, plain in [(0, True), (1, True), (2, False)]:
        batch = _batch()
        callback.on_train_batch_start(_trainer(epoch), None, batch, 0)
        mean = torch.tensor(callback.augmenter.pipelines[0].mean).reshape(1, 3, 1, 1)
        std = torch.tensor(callback.augmenter.pipelines[0].std).reshape(1, 3, 1, 1)
        undone = [c * std + mean for c in batch[1]]  # the normalisation undone
        same = all(torch.allclose(u, p, atol=1e-5) for u, p in zip(undone, plain_crops))
        assert same == plain, epoch
    with pytest.raises(ValueError, match="together"):
        _callback(warmup_epochs=2)


def test_crops_get_the_precision_plugins_dtype():
    callback, _ = _callback()
    batch = _batch()
    callback.on_train_batch_start(_trainer(precision=HalfPrecision("bf16-true")), None, batch, 0)
    assert all(c.dtype == torch.bfloat16 for c in batch[1])


def test_a_batch_of_another_shape_is_refused():
    callback, _ = _callback()
    with pytest.raises(ValueError, match=r"expects batches \(indexes, \[crops\], targets\)"):
        callback.on_train_batch_start(_trainer(), None, [torch.zeros(2), torch.zeros(2)], 0)
    batch = _batch(sizes=(12, 12))
    with pytest.raises(ValueError, match="2 crops but the augmentations give 3"):
        callback.on_train_batch_start(_trainer(), None, batch, 0)


def _cfg(**data):
    return OmegaConf.create({
        "method": "simclr", "backbone": {"name": "test_resnet"},
        "data": {"dataset": "synthetic_cub", "train_path": "x", **data},
        "optimizer": {"name": "sgd", "batch_size": 4, "lr": 0.1},
        "augmentations": [augmentation(32, 2)]})


def test_config_key_defaults_to_cpu_and_refuses_other_values():
    def check(cfg):
        return check_pretrain_cfg(cfg, DATASETS, host.METHODS)

    assert check(_cfg()).data.augment_on == "cpu"
    assert check(_cfg(augment_on="device")).data.augment_on == "device"
    with pytest.raises(ConfigError, match=r"data.augment_on: expected one of \['cpu', 'device'\]"
                       r", got 'gpu'"):
        check(_cfg(augment_on="gpu"))
