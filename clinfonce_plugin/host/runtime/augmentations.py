"""solo-learn's augmentation yaml schema on torchvision.transforms.v2.

One pipeline node (a list entry of ``augmentations:``)::

    crop_size: int            num_crops: int
    rrc: {enabled, crop_min_scale, crop_max_scale}
    color_jitter: {prob, brightness, contrast, saturation, hue}
    grayscale: {prob}   gaussian_blur: {prob}   solarization: {prob}
    equalization: {prob}   horizontal_flip: {prob}
    [mean, std]   (defaults per dataset, else ImageNet's)
"""
from typing import Callable, List, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEANS_N_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet100": (IMAGENET_MEAN, IMAGENET_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}


def _blur_kernel(crop_size: int) -> int:
    # 10% of the crop, odd (SimCLR's rule), at least 3
    k = max(3, int(0.1 * crop_size))
    return k if k % 2 == 1 else k + 1


def build_transform_pipeline(dataset: str, cfg) -> Callable:
    """One augmentation node -> a v2 Compose producing a normalised float tensor."""
    mean, std = MEANS_N_STD.get(
        dataset, (cfg.get("mean") or IMAGENET_MEAN, cfg.get("std") or IMAGENET_STD)
    )
    # The geometric and colour ops run on the PIL image, as in solo-learn, and the tensor
    # conversion comes last: torchvision's PIL colour kernels are ~10x faster than its
    # uint8-tensor ones (hue goes through a float HSV round trip), which made the colour
    # jitter of a 32x32 crop cost ~4 ms and the data loader the bottleneck of CPU runs.
    ops: List[Callable] = [_AsImage()]
    if cfg.rrc.enabled:
        ops.append(T.RandomResizedCrop(
            cfg.crop_size, scale=(cfg.rrc.crop_min_scale, cfg.rrc.crop_max_scale),
            interpolation=T.InterpolationMode.BICUBIC, antialias=True))
    else:
        ops.append(T.Resize(cfg.crop_size, interpolation=T.InterpolationMode.BICUBIC,
                            antialias=True))
        ops.append(T.CenterCrop(cfg.crop_size))
    if cfg.color_jitter.prob:
        cj = cfg.color_jitter
        ops.append(T.RandomApply(
            [T.ColorJitter(cj.brightness, cj.contrast, cj.saturation, cj.hue)], p=cj.prob))
    if cfg.grayscale.prob:
        ops.append(T.RandomGrayscale(p=cfg.grayscale.prob))
    if cfg.gaussian_blur.prob:
        ops.append(T.RandomApply(
            [T.GaussianBlur(_blur_kernel(cfg.crop_size), sigma=(0.1, 2.0))],
            p=cfg.gaussian_blur.prob))
    if cfg.solarization.prob:
        ops.append(T.RandomSolarize(threshold=128, p=cfg.solarization.prob))
    if cfg.get("equalization", {}).get("prob", 0.0):
        ops.append(T.RandomEqualize(p=cfg.equalization.prob))
    if cfg.horizontal_flip.prob:
        ops.append(T.RandomHorizontalFlip(p=cfg.horizontal_flip.prob))
    ops += [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean=mean, std=std)]
    return T.Compose(ops)


class _AsImage:
    """PIL images and tensors pass; a numpy HWC array becomes a PIL image (v2 ops would
    otherwise pass an array through untouched)."""

    def __call__(self, x):
        if isinstance(x, np.ndarray):
            return Image.fromarray(x)
        return x

    def __repr__(self) -> str:
        return "AsImage()"


class NCropAugmentation:
    """Applies one transform ``num_crops`` times to the same image."""

    def __init__(self, transform: Callable, num_crops: int):
        if num_crops < 1:
            raise ValueError(f"num_crops must be >= 1, got {num_crops}")
        self.transform = transform
        self.num_crops = num_crops

    def __call__(self, x) -> List[torch.Tensor]:
        return [self.transform(x) for _ in range(self.num_crops)]

    def __repr__(self) -> str:
        return f"{self.num_crops} x [{self.transform}]"


class FullTransformPipeline:
    """Concatenates the crops of several NCropAugmentations (large crops first)."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        for transform in self.transforms:
            out.extend(transform(x))
        return out

    def __repr__(self) -> str:
        return "\n".join(str(t) for t in self.transforms)
