"""The transforms of a run, built from its ``augmentations`` by the resolved host: the
multi-crop pretrain pipeline (with the ``warmup_augmentations`` schedule when configured) and
the deterministic evaluation transform (applied to a dataset by
``data.indexed.TransformedImages``). With ``data.augment_on: device`` the pretrain crops are
the workers' share only (``augment.worker``: uint8 crops; the random ops run on the device)."""
from typing import Any, Callable, List, Optional, Tuple

import omegaconf
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.augment.worker import build_worker_transform
from clinfonce_plugin.data.augmentation_schedule import EpochClock, ScheduledTransform
from clinfonce_plugin.data.knn_multicrop import split_crop_pipelines

_RANDOM_OPS = ("color_jitter", "grayscale", "gaussian_blur", "solarization", "equalization",
               "horizontal_flip")


def _crop_builder(cfg: omegaconf.DictConfig) -> Callable[[str, Any], Callable]:
    """(dataset, node) -> per-crop transform: the host's pipeline, or with
    ``data.augment_on: device`` the worker's decode-and-crop share."""
    if cfg.data.augment_on == "device":
        return build_worker_transform
    return host.build_transform_pipeline


def _full(cfg: omegaconf.DictConfig, augmentations) -> Callable[[Any], List[Any]]:
    build = _crop_builder(cfg)
    pipelines = [host.NCropAugmentation(build(cfg.data.dataset, aug), aug.num_crops)
                 for aug in augmentations]
    return host.FullTransformPipeline(pipelines)


def _switch_epoch(cfg: omegaconf.DictConfig, clock: Optional[EpochClock]) -> int:
    """Epochs of ``warmup_augmentations`` (0: no schedule); a schedule needs the clock."""
    epochs = int(cfg.warmup_augmentation_epochs)
    if epochs and clock is None:
        raise ValueError("warmup_augmentation_epochs > 0 needs the runner's EpochClock")
    return epochs


def pretrain_transform(cfg: omegaconf.DictConfig, clock: Optional[EpochClock] = None):
    """image -> list of crops, one pipeline per entry of ``cfg.augmentations``; while
    ``clock.epoch < warmup_augmentation_epochs``, those of ``cfg.warmup_augmentations``."""
    normal = _full(cfg, cfg.augmentations)
    epochs = _switch_epoch(cfg, clock)
    if not epochs:
        return normal
    return ScheduledTransform(_full(cfg, cfg.warmup_augmentations), normal, epochs, clock)


def crop_pipelines(cfg: omegaconf.DictConfig, clock: Optional[EpochClock] = None
                   ) -> Tuple[List[Any], List[Any]]:
    """Per-crop transforms (large crops, small crops) of ``cfg.augmentations`` in the host's
    crop order (KNN multi-crop cuts each small crop from a different image), scheduled like
    ``pretrain_transform``."""
    builder = _crop_builder(cfg)

    def build(aug):
        return builder(cfg.data.dataset, aug)

    large, small = split_crop_pipelines(cfg.augmentations, build)
    epochs = _switch_epoch(cfg, clock)
    if not epochs:
        return large, small
    # the config check guarantees the same crop sizes and counts, so the lists pair up
    weak_large, weak_small = split_crop_pipelines(cfg.warmup_augmentations, build)
    return ([ScheduledTransform(w, n, epochs, clock) for w, n in zip(weak_large, large)],
            [ScheduledTransform(w, n, epochs, clock) for w, n in zip(weak_small, small)])


def _single_crop(cfg: omegaconf.DictConfig, crop_min_scale: Optional[float]):
    """The first pipeline of ``cfg.augmentations`` (its crop size, normalisation) with every
    random op off; a random-resized crop of area fraction [crop_min_scale, 1] and a
    horizontal flip (p 0.5) when ``crop_min_scale`` is given, else resize + centre crop."""
    node = OmegaConf.create(OmegaConf.to_container(cfg.augmentations[0], resolve=True))
    for key in _RANDOM_OPS:
        if key in node:
            node[key].prob = 0.0
    node.rrc.enabled = crop_min_scale is not None
    if crop_min_scale is not None:
        node.rrc.crop_min_scale, node.rrc.crop_max_scale = float(crop_min_scale), 1.0
        node.horizontal_flip = {"prob": 0.5}
    return host.build_transform_pipeline(cfg.data.dataset, node)


def eval_transform(cfg: omegaconf.DictConfig):
    """Deterministic resize + centre crop at the first pipeline's crop size, normalised like
    training (validation, features, the k-means embedding pass)."""
    return _single_crop(cfg, None)


def classifier_train_transform(cfg: omegaconf.DictConfig, crop_min_scale: float):
    """A fresh random-resized crop (area fraction [crop_min_scale, 1]) + horizontal flip of
    every image at each draw, at the first pipeline's crop size and normalised like training:
    the training images of paper-protocol linear evaluation and fine-tuning."""
    return _single_crop(cfg, crop_min_scale)
