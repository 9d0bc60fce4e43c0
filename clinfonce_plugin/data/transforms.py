"""The transforms of a run, built from its ``augmentations`` by the resolved host: the
multi-crop pretrain pipeline (with the ``warmup_augmentations`` schedule when configured) and
the deterministic evaluation transform (applied to a dataset by
``data.indexed.TransformedImages``)."""
from typing import Any, Callable, List, Optional, Tuple

import omegaconf
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.data.augmentation_schedule import EpochClock, ScheduledTransform
from clinfonce_plugin.data.knn_multicrop import split_crop_pipelines

_RANDOM_OPS = ("color_jitter", "grayscale", "gaussian_blur", "solarization", "equalization",
               "horizontal_flip")


def _full(cfg: omegaconf.DictConfig, augmentations) -> Callable[[Any], List[Any]]:
    pipelines = [
        host.NCropAugmentation(host.build_transform_pipeline(cfg.data.dataset, aug), aug.num_crops)
        for aug in augmentations
    ]
    return host.FullTransformPipeline(pipelines)


def _switch_epoch(cfg: omegaconf.DictConfig, clock: Optional[EpochClock]) -> int:
    """Epochs of ``warmup_augmentations`` (0: no schedule); a schedule needs the clock."""
    epochs = int(cfg.get("warmup_augmentation_epochs") or 0)
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
    def build(aug):
        return host.build_transform_pipeline(cfg.data.dataset, aug)

    large, small = split_crop_pipelines(cfg.augmentations, build)
    epochs = _switch_epoch(cfg, clock)
    if not epochs:
        return large, small
    # the config check guarantees the same crop sizes and counts, so the lists pair up
    weak_large, weak_small = split_crop_pipelines(cfg.warmup_augmentations, build)
    return ([ScheduledTransform(w, n, epochs, clock) for w, n in zip(weak_large, large)],
            [ScheduledTransform(w, n, epochs, clock) for w, n in zip(weak_small, small)])


def eval_transform(cfg: omegaconf.DictConfig):
    """Deterministic resize + centre crop at the first pipeline's crop size, normalised like
    training (validation, features, the k-means embedding pass)."""
    node = OmegaConf.create(OmegaConf.to_container(cfg.augmentations[0], resolve=True))
    node.rrc.enabled = False
    for key in _RANDOM_OPS:
        if key in node:
            node[key].prob = 0.0
    return host.build_transform_pipeline(cfg.data.dataset, node)
