"""The data-loader workers' share of ``data.augment_on: device``: the per-sample geometry.

``build_worker_transform(dataset, node)`` has the signature of the host's
``build_transform_pipeline``: an image (decoded by the dataset) -> a uint8 ``(3, S, S)``
tensor of the node's crop size S. With ``rrc.enabled`` it is the CPU pipeline's
RandomResizedCrop (scale from the node, ratio 3/4-4/3, bicubic with antialiasing): the crop
box is drawn by torchvision's ``RandomResizedCrop.get_params`` (the same draws from torch's
generator as the CPU pipeline) and resized by torch's uint8 bicubic antialiased
interpolation, which matches PIL's bicubic resize to within 1 of 255 and is several times
faster. Otherwise: resize (shorter side to S, bicubic) + centre crop, as the CPU pipeline.
The random ops and the normalisation run later, batched (``augment.batched``).
Plain torch/PIL: no host or Lightning import.
"""
import warnings
from typing import Any, Callable, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T1
from torchvision.transforms import v2 as T

__all__ = ["WorkerCrop", "build_worker_transform"]

RATIO = (3.0 / 4.0, 4.0 / 3.0)  # RandomResizedCrop's default aspect-ratio range


_readonly_warning_drawn = False


def _draw_readonly_warning() -> None:
    """torch warns once per process when it wraps a read-only numpy array (PIL's arrays
    are); the crops here are only read (``interpolate`` writes a new tensor), and copying
    the array to silence it would add a few % to the worker's time, so the one warning is
    drawn here, silenced, in the processes that make worker crops."""
    global _readonly_warning_drawn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        readonly = np.zeros(1, dtype=np.uint8)
        readonly.setflags(write=False)
        torch.from_numpy(readonly)
    _readonly_warning_drawn = True


def _as_image(x: Any) -> Image.Image:
    if isinstance(x, Image.Image):
        return x if x.mode == "RGB" else x.convert("RGB")
    if isinstance(x, np.ndarray):
        return Image.fromarray(x).convert("RGB")
    raise TypeError(f"expected a PIL image or an HWC uint8 array, got {type(x).__name__}")


class WorkerCrop:
    """image -> uint8 (3, size, size): a random-resized crop (``scale`` = area fraction
    range), or resize + centre crop when ``scale`` is None."""

    def __init__(self, size: int, scale: Tuple[float, float] = None) -> None:
        if size < 1:
            raise ValueError(f"crop size must be >= 1, got {size}")
        if scale is not None and not 0 <= scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 <= min <= max <= 1, got {scale}")
        self.size, self.scale = int(size), scale
        if scale is None:
            self._deterministic = T.Compose([
                T.Resize(self.size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
                T.CenterCrop(self.size)])

    def __call__(self, x: Any) -> torch.Tensor:
        img = _as_image(x)
        if self.scale is None:
            return torch.from_numpy(np.array(self._deterministic(img))).permute(2, 0, 1)
        if not _readonly_warning_drawn:
            _draw_readonly_warning()
        top, left, h, w = T1.RandomResizedCrop.get_params(img, self.scale, RATIO)
        region = np.asarray(img.crop((left, top, left + w, top + h)))
        # HWC viewed as (1, C, H, W): channels-last strides, the layout torch's uint8
        # antialiased kernel is fastest on
        chw = torch.from_numpy(region).permute(2, 0, 1).unsqueeze(0)
        out = F.interpolate(chw, size=(self.size, self.size), mode="bicubic", antialias=True)
        return out[0].contiguous()

    def __repr__(self) -> str:
        how = f"RandomResizedCrop(scale={self.scale})" if self.scale else "Resize+CenterCrop"
        return f"WorkerCrop({self.size}, {how}, uint8)"


def build_worker_transform(dataset: str, cfg) -> Callable[[Any], torch.Tensor]:
    """One augmentation node -> the worker transform of ``augment_on: device`` (``dataset``
    is unused: the normalisation happens on the device; the argument keeps the host's
    ``build_transform_pipeline`` signature)."""
    if cfg.rrc.enabled:
        return WorkerCrop(cfg.crop_size, (float(cfg.rrc.crop_min_scale),
                                          float(cfg.rrc.crop_max_scale)))
    return WorkerCrop(cfg.crop_size, None)
