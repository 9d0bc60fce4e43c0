"""solo-learn's augmentation yaml schema as per-crop transforms on PIL images.

One pipeline node (a list entry of ``augmentations:``)::

    crop_size: int            num_crops: int
    rrc: {enabled, crop_min_scale, crop_max_scale}
    color_jitter: {prob, brightness, contrast, saturation, hue}
    grayscale: {prob}   gaussian_blur: {prob}   solarization: {prob}
    equalization: {prob}   horizontal_flip: {prob}
    [mean, std]   (defaults per dataset, else ImageNet's)

The ops, their order, probabilities and ranges are solo-learn's (random-resized crop, colour
jitter, grayscale, Gaussian blur, solarization, equalization, horizontal flip, then the
normalised tensor). Every op works on the PIL image in Pillow's C code and draws its random
parameters from torch's generator with torchvision's own samplers
(``RandomResizedCrop.get_params``, ``ColorJitter.get_params``), so the workers' seeds decide
them as before. The ops are small classes rather than ``torchvision.transforms.v2``
transforms: v2 blurs a PIL image by converting it to a float tensor and back, and adds a
per-call dispatch step to every op.

Output equal to torchvision's functional op on the same parameters, except:

- Gaussian blur is Pillow's ``ImageFilter.GaussianBlur(radius=sigma)`` (solo-learn's op):
  three extended box filters whose kernel has exactly the variance sigma^2 per axis, with no
  kernel-size truncation. torchvision's ``GaussianBlur(kernel_size, sigma)`` (used here
  before, with a kernel of 10 % of the crop, odd, >= 3) samples a Gaussian on that kernel:
  at 224 px that is 23 taps (+-5.5 sigma at sigma 2, no visible truncation), at 96 px 9 taps
  (+-2 sigma at sigma 2: the tails are cut, so Pillow's blur is a little stronger there);
  and below sigma ~0.5 a sampled Gaussian is nearly the identity while Pillow's kernel keeps
  its variance sigma^2. sigma is uniform in [0.1, 2.0] in both, drawn the same way.
- The tensor conversion computes x / (255 std) - mean / std in float32: within 1e-6 of
  ``Normalize(ToDtype(ToImage(x), scale=True))`` (a different rounding order).
"""
from typing import Callable, List, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as tv
from torchvision.transforms import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEANS_N_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet100": (IMAGENET_MEAN, IMAGENET_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
BLUR_SIGMA = (0.1, 2.0)  # SimCLR's range of the blur's standard deviation, in pixels
SOLARIZE_THRESHOLD = 128


def _coin(p: float) -> bool:
    """True with probability p (one draw of torch's generator, as torchvision's ops)."""
    return bool(torch.rand(1) < p)


class Compose:
    """Applies ``ops`` in order."""

    def __init__(self, ops: Sequence[Callable]):
        self.transforms = list(ops)

    def __call__(self, x):
        for op in self.transforms:
            x = op(x)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(op) for op in self.transforms) + ")"


class RandomApply:
    """``op`` with probability ``p``, else the image unchanged."""

    def __init__(self, op: Callable, p: float):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.op, self.p = op, float(p)

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.op(img) if _coin(self.p) else img

    def __repr__(self) -> str:
        return f"RandomApply({self.op!r}, p={self.p})"


class AsImage:
    """PIL images pass; a numpy HWC uint8 array or a CHW uint8 tensor becomes a PIL image."""

    def __call__(self, x) -> Image.Image:
        if isinstance(x, np.ndarray):
            return Image.fromarray(x)
        if isinstance(x, torch.Tensor):
            return TF.to_pil_image(x)
        return x

    def __repr__(self) -> str:
        return "AsImage()"


class RandomResizedCrop:
    """torchvision's random-resized crop (area fraction ``scale``, aspect ratio ``ratio``,
    its sampler) resized to ``size`` x ``size`` with Pillow's bicubic filter (antialiased)."""

    def __init__(self, size: int, scale: Sequence[float], ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)

    def __call__(self, img: Image.Image) -> Image.Image:
        top, left, h, w = tv.RandomResizedCrop.get_params(img, self.scale, self.ratio)
        # crop, then resize: torchvision's resized_crop on a PIL image, value for value
        return img.crop((left, top, left + w, top + h)).resize((self.size, self.size),
                                                               Image.BICUBIC)

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale})"


class ResizeCenterCrop:
    """Shorter side to ``size`` (bicubic), then the centred ``size`` x ``size`` square."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        img = TF.resize(img, self.size, interpolation=tv.InterpolationMode.BICUBIC)
        return TF.center_crop(img, [self.size, self.size])

    def __repr__(self) -> str:
        return f"ResizeCenterCrop({self.size})"


def adjust_hue(img: Image.Image, factor: float) -> Image.Image:
    """torchvision's ``adjust_hue`` on an RGB PIL image, value for value: the hue channel of
    Pillow's 8-bit HSV shifted by int(factor * 255) modulo 256, through a lookup table on the
    hue band (torchvision goes through numpy)."""
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
    shift = int(factor * 255) % 256  # truncated toward zero, as torchvision's np.int32 cast
    h, s, v = img.convert("HSV").split()
    h = h.point(_IDENTITY[shift:] + _IDENTITY[:shift])
    return Image.merge("HSV", (h, s, v)).convert("RGB")


_IDENTITY = list(range(256))


class ColorJitter:
    """torchvision's colour jitter: brightness, contrast, saturation and hue factors drawn
    uniformly by its ``ColorJitter.get_params`` (brightness in [max(0, 1 - b), 1 + b], likewise
    contrast and saturation; hue in [-h, h]), applied in a random order; a strength of 0
    leaves that adjustment out."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float):
        # torchvision's constructor checks the strengths and turns them into ranges
        ranges = tv.ColorJitter(brightness, contrast, saturation, hue)
        self.ranges = (ranges.brightness, ranges.contrast, ranges.saturation, ranges.hue)
        self.strengths = (brightness, contrast, saturation, hue)

    def __call__(self, img: Image.Image) -> Image.Image:
        order, b, c, s, h = tv.ColorJitter.get_params(*self.ranges)
        for i in order.tolist():
            if i == 0 and b is not None:
                img = TF.adjust_brightness(img, b)
            elif i == 1 and c is not None:
                img = TF.adjust_contrast(img, c)
            elif i == 2 and s is not None:
                img = TF.adjust_saturation(img, s)
            elif i == 3 and h is not None:
                img = adjust_hue(img, h)
        return img

    def __repr__(self) -> str:
        return "ColorJitter(brightness={}, contrast={}, saturation={}, hue={})".format(
            *self.strengths)


class Grayscale:
    """ITU-R 601 luma (Pillow's "L") repeated in three channels: torchvision's
    ``rgb_to_grayscale(img, 3)`` on a PIL image, value for value."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.convert("L").convert("RGB")

    def __repr__(self) -> str:
        return "Grayscale()"


class GaussianBlur:
    """Pillow's Gaussian blur with a standard deviation drawn uniformly from ``sigma`` (see
    the module docstring for how it differs from torchvision's truncated kernel)."""

    def __init__(self, sigma: Sequence[float] = BLUR_SIGMA):
        low, high = (float(v) for v in sigma)
        if not 0 < low <= high:
            raise ValueError(f"sigma must be a range 0 < low <= high, got {tuple(sigma)}")
        self.sigma = (low, high)

    def draw_sigma(self) -> float:
        return float(torch.empty(1).uniform_(*self.sigma))

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(radius=self.draw_sigma()))

    def __repr__(self) -> str:
        return f"GaussianBlur(sigma={self.sigma})"


class Solarize:
    """Inverts every value >= 128 (Pillow's ``ImageOps.solarize``)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return ImageOps.solarize(img, SOLARIZE_THRESHOLD)

    def __repr__(self) -> str:
        return "Solarize()"


class Equalize:
    """Histogram equalisation per channel (Pillow's ``ImageOps.equalize``)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return ImageOps.equalize(img)

    def __repr__(self) -> str:
        return "Equalize()"


class HorizontalFlip:
    def __call__(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    def __repr__(self) -> str:
        return "HorizontalFlip()"


class ToNormalizedTensor:
    """RGB PIL image -> (3, H, W) float32 tensor (x / 255 - mean) / std: Pillow's band planes
    stacked, then one scale and one shift in place (torchvision's ToImage, ToDtype and
    Normalize make four passes, the first a channel transpose)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got {mean}, {std}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        mean64 = torch.tensor(self.mean, dtype=torch.float64)
        std64 = torch.tensor(self.std, dtype=torch.float64)
        self.scale = (1 / (255 * std64)).float().view(3, 1, 1)
        self.shift = (-mean64 / std64).float().view(3, 1, 1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        planes = [torch.frombuffer(bytearray(band.tobytes()), dtype=torch.uint8)
                  for band in img.split()]
        x = torch.stack(planes).view(3, img.height, img.width).float()
        return x.mul_(self.scale).add_(self.shift)

    def __repr__(self) -> str:
        return f"ToNormalizedTensor(mean={self.mean}, std={self.std})"


def build_transform_pipeline(dataset: str, cfg) -> Callable:
    """One augmentation node -> a transform from an image to its normalised float tensor."""
    mean, std = MEANS_N_STD.get(
        dataset, (cfg.get("mean") or IMAGENET_MEAN, cfg.get("std") or IMAGENET_STD)
    )
    ops: List[Callable] = [AsImage()]
    if cfg.rrc.enabled:
        ops.append(RandomResizedCrop(cfg.crop_size,
                                     scale=(cfg.rrc.crop_min_scale, cfg.rrc.crop_max_scale)))
    else:
        ops.append(ResizeCenterCrop(cfg.crop_size))
    if cfg.color_jitter.prob:
        cj = cfg.color_jitter
        ops.append(RandomApply(ColorJitter(cj.brightness, cj.contrast, cj.saturation, cj.hue),
                               cj.prob))
    if cfg.grayscale.prob:
        ops.append(RandomApply(Grayscale(), cfg.grayscale.prob))
    if cfg.gaussian_blur.prob:
        ops.append(RandomApply(GaussianBlur(BLUR_SIGMA), cfg.gaussian_blur.prob))
    if cfg.solarization.prob:
        ops.append(RandomApply(Solarize(), cfg.solarization.prob))
    if cfg.equalization.prob:
        ops.append(RandomApply(Equalize(), cfg.equalization.prob))
    if cfg.horizontal_flip.prob:
        ops.append(RandomApply(HorizontalFlip(), cfg.horizontal_flip.prob))
    ops.append(ToNormalizedTensor(mean, std))
    return Compose(ops)


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
