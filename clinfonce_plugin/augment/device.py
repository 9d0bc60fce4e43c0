"""``data.augment_on: device``, the training process's side: the batched pipelines of a run's
``augmentations`` and the Lightning callback that applies them to each training batch on the
model's device, before ``training_step``.

The callback works for every method on either host: it only rewrites the crop list of the
host's batch ``(indexes, [crop_1 .. crop_n], targets)``. Lightning moves the batch to the
device before ``on_train_batch_start``, so the uint8 crops travel and the float crops are
made where the model is (on a CPU-only machine: on the CPU, in the training process).

Random state: the generator of a batch is seeded from (run seed, global rank, epoch, batch
index), so the ranks draw independent parameters, the same seed gives the same batches, and
a run resumed at an epoch draws what the uninterrupted run drew there (the crops themselves
come from the workers, whose generators the runner's ``RNGState`` restores); the callback
has no state of its own to checkpoint.
"""
import math
from typing import Any, List, Optional, Sequence

import lightning.pytorch as pl
import numpy as np
import omegaconf
import torch

from clinfonce_plugin.augment.batched import BatchedAugmentation, CropAugmenter
from clinfonce_plugin.host.runtime.augmentations import (BLUR_SIGMA, IMAGENET_MEAN,
                                                         IMAGENET_STD, MEANS_N_STD)

__all__ = ["batched_pipeline", "blur_kernel_size", "crop_augmenter", "DeviceAugmentation",
           "batch_seed"]


def blur_kernel_size(crop_size: int, sigma_max: float = BLUR_SIGMA[1]) -> int:
    """Taps of the batched blur: +-3 sigma_max (13 at SimCLR's sigma_max 2), so the sampled
    Gaussian is not truncated, as the CPU pipeline's Pillow blur is not; at most the largest
    odd number <= crop_size (reflect padding needs pad < size), at least 1."""
    taps = 2 * math.ceil(3 * sigma_max) + 1
    largest = crop_size if crop_size % 2 == 1 else crop_size - 1
    return max(1, min(taps, largest))


def batched_pipeline(dataset: str, node) -> BatchedAugmentation:
    """One augmentation node -> its batched random ops and normalisation, with the bundled
    runtime's normalisation (the dataset's own values, else the node's, else ImageNet's)
    and a blur kernel of ``blur_kernel_size(crop_size)`` taps on either host."""
    mean, std = MEANS_N_STD.get(
        dataset, (node.get("mean") or IMAGENET_MEAN, node.get("std") or IMAGENET_STD))
    return BatchedAugmentation.from_node(node, mean, std, blur_kernel_size(node.crop_size))


def crop_augmenter(dataset: str, augmentations: Sequence[Any]) -> CropAugmenter:
    """The pipelines of a batch's crops in the host's crop order: each node's ``num_crops``
    crops in node order (large crops first), as ``FullTransformPipeline`` and the KNN
    multi-crop order them."""
    pipelines: List[BatchedAugmentation] = []
    for node in augmentations:
        pipeline = batched_pipeline(dataset, node)
        pipelines += [pipeline] * int(node.num_crops)
    return CropAugmenter(pipelines)


def batch_seed(seed: int, rank: int, epoch: int, batch_idx: int) -> int:
    """A 63-bit seed of one batch (numpy's SeedSequence: distinct inputs give unrelated
    seeds, unlike sums such as seed + rank)."""
    state = np.random.SeedSequence([int(seed), int(rank), int(epoch), int(batch_idx)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class DeviceAugmentation(pl.Callback):
    """Replaces the uint8 crops of every training batch, on the model's device, by their
    augmented float crops (``augmenter``; ``warmup`` while epoch < ``warmup_epochs``).

    The crops are converted like the rest of the batch by the precision plugin (e.g. to
    bfloat16 under ``bf16-true``), after the augmentation, which runs in float32.
    """

    def __init__(self, augmenter: CropAugmenter, seed: int,
                 warmup: Optional[CropAugmenter] = None, warmup_epochs: int = 0) -> None:
        if (warmup is None) != (warmup_epochs == 0):
            raise ValueError("give warmup pipelines and warmup_epochs > 0 together, or neither")
        self.augmenter, self.warmup, self.warmup_epochs = augmenter, warmup, int(warmup_epochs)
        self.seed = int(seed)

    @classmethod
    def from_cfg(cls, cfg: omegaconf.DictConfig) -> "DeviceAugmentation":
        dataset = cfg.data.dataset
        epochs = int(cfg.warmup_augmentation_epochs)
        warmup = crop_augmenter(dataset, cfg.warmup_augmentations) if epochs else None
        return cls(crop_augmenter(dataset, cfg.augmentations), int(cfg.seed), warmup, epochs)

    def augmenter_of(self, epoch: int) -> CropAugmenter:
        return self.warmup if epoch < self.warmup_epochs else self.augmenter

    def augment(self, crops: Sequence[torch.Tensor], epoch: int, batch_idx: int,
                rank: int = 0) -> List[torch.Tensor]:
        """The augmented crops of one batch (its crops all on one device)."""
        device = crops[0].device
        generator = torch.Generator(device=device)
        generator.manual_seed(batch_seed(self.seed, rank, epoch, batch_idx))
        return self.augmenter_of(epoch)(crops, generator)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if not isinstance(batch, (list, tuple)) or len(batch) != 3 \
                or not isinstance(batch[1], (list, tuple)):
            raise ValueError("data.augment_on=device expects batches (indexes, [crops], "
                             f"targets), got {type(batch).__name__}")
        crops = self.augment(batch[1], trainer.current_epoch, batch_idx, trainer.global_rank)
        crops = trainer.precision_plugin.convert_input(crops)
        if isinstance(batch[1], list):
            batch[1][:] = crops  # the list training_step receives
        elif isinstance(batch, list):
            batch[1] = crops
        else:
            raise ValueError("data.augment_on=device needs a mutable batch: a list, or a "
                             "list of crops")
