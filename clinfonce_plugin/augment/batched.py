"""Batched augmentation of crops on any device (``data.augment_on: device``).

The random ops of one pipeline node of solo-learn's augmentation schema (colour jitter,
grayscale, Gaussian blur, solarization, equalization, horizontal flip, then normalisation)
on a batch of crops ``(B, 3, H, W)``, uint8 or float in [0, 1], with independent random
parameters per sample drawn from a ``torch.Generator``. Each op follows
``torchvision.transforms.v2`` on a float image:

- colour jitter (``ColorJitter``): brightness, contrast and saturation factors uniform in
  ``[max(0, 1 - s), 1 + s]``, hue uniform in ``[-h, h]``; the four adjustments in a random
  order per sample (an op of strength 0 is skipped);
- grayscale (``RandomGrayscale``): ITU-R 601 luma on all three channels;
- Gaussian blur (``GaussianBlur``): sigma uniform in ``[0.1, 2.0]`` per sample, an odd
  ``kernel_size``, reflect padding;
- solarization (``RandomSolarize(128)``): values >= 128/255 become 1 - value;
- equalization (``RandomEqualize``): torchvision's per-image, per-channel histogram
  equalisation (on the image quantised to uint8, as torchvision does for floats);
- horizontal flip; then ``(x - mean) / std``.

Each op is applied to a sample with its node's probability. Everything runs on the device
of the batch; the parameters of a batch are one draw of uniforms from the generator, so a
generator in the same state gives the same batch. Plain torch: no host or Lightning import.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

__all__ = ["BatchedAugmentation", "CropAugmenter", "adjust_brightness", "adjust_contrast",
           "adjust_saturation", "adjust_hue", "gaussian_blur", "solarize", "to_float",
           "SIGMA_RANGE", "SOLARIZE_THRESHOLD"]

SIGMA_RANGE = (0.1, 2.0)  # the blur's sigma range (SimCLR's, as the CPU pipeline's)
SOLARIZE_THRESHOLD = 128 / 255  # RandomSolarize(threshold=128) on the uint8 scale
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
_TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32

# columns of the uniform draw behind one batch's parameters
_COLUMNS = ("jitter", *JITTER_OPS, "order0", "order1", "order2", "order3", "grayscale", "blur",
            "sigma", "solarize", "equalize", "flip")
_COL = {name: i for i, name in enumerate(_COLUMNS)}


def _per_sample(f: torch.Tensor) -> torch.Tensor:
    return f.reshape(-1, 1, 1, 1)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; a float batch (in [0, 1]) -> a float32 copy."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise ValueError(f"crops must be uint8 or float, got {x.dtype}")
    return x.to(torch.float32, copy=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # torchvision's blend: x * f + other * (1 - f), clamped to the valid range
    f = _per_sample(factor)
    return (x * f).add_(other * (1.0 - f)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) float in [0, 1], (n,) factors -> ``x * factor`` clamped."""
    return (x * _per_sample(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean of each image's luma."""
    mean = TF.rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with each image's luma."""
    return _blend(x, TF.rgb_to_grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotates the HSV hue of each image (float in [0, 1]) by ``shift`` (n,) turns, in
    [-0.5, 0.5].

    RGB -> HSV -> RGB without forming S: with v = max, d = max - min and the hue h6 in
    sixths of a turn, channel c is ``v - d * clamp(min(k, 4 - k), 0, 1)``,
    ``k = (n_c + h6) mod 6``, n = 5, 3, 1 for r, g, b. The channel selection is float
    arithmetic (``ceil`` of a difference in [0, 1] is 0 where it is 0, else 1): boolean
    masks and ``torch.where`` are several times slower on CPUs.
    """
    r, g, b = x.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = maxc - torch.minimum(torch.minimum(r, g), b)
    # the channel holding the maximum; red wins ties, then green (torchvision's and PIL's
    # rule). A grey pixel has r == max and g == b: numerator 0, hue 0.
    not_r = (maxc - r).ceil_()
    is_g = (1.0 - (maxc - g).ceil_()).mul_(not_r)
    is_b = not_r - is_g
    num = (g - b).mul_(1.0 - not_r)
    num += (b - r).add_(delta, alpha=2.0).mul_(is_g)
    num += (r - g).add_(delta, alpha=4.0).mul_(is_b)
    # delta is 0 only on grey pixels, where num is 0 too: a floor of the smallest normal
    # float keeps 0 / 0 out and divides every other pixel by its exact delta. (A range
    # below 2**-24, e.g. from the contrast blend cancelling near black, is a real case.)
    h6 = num.div_(delta.clamp_min(_TINY)).add_(6.0 * shift.reshape(-1, 1, 1)).unsqueeze(-3)
    k = h6 + torch.tensor([5.0, 3.0, 1.0], device=x.device).reshape(1, 3, 1, 1)
    k = k.sub_((k / 6.0).floor_().mul_(6.0))  # mod 6
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(-3) - delta.unsqueeze(-3) * ramp


def _gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(n,) sigmas -> (n, kernel_size) normalised 1-D Gaussian kernels."""
    half = (kernel_size - 1) / 2
    offsets = torch.arange(kernel_size, device=sigma.device, dtype=torch.float32) - half
    weights = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].float()) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blurs image i with its own sigma[i]: the separable Gaussian as a depthwise
    convolution (one kernel per image and channel), reflect padding."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    n, c, h, w = x.shape
    if n == 0:
        return x
    pad = kernel_size // 2
    kern = _gaussian_kernels(sigma, kernel_size).repeat_interleave(c, dim=0)  # (n*c, k)
    flat = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    flat = F.conv2d(flat, kern[:, None, None, :], groups=n * c)  # along W
    flat = F.conv2d(flat, kern[:, None, :, None], groups=n * c)  # along H
    return flat.reshape(n, c, h, w)


def solarize(x: torch.Tensor, threshold: float = SOLARIZE_THRESHOLD) -> torch.Tensor:
    return torch.where(x >= threshold, 1.0 - x, x)


_JITTER_FNS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


@dataclass(frozen=True)
class BatchedAugmentation:
    """The random ops and normalisation of one augmentation node, batched.

    Args:
        color_jitter: (prob, brightness, contrast, saturation, hue) strengths.
        grayscale, gaussian_blur, solarization, equalization, horizontal_flip: probabilities.
        blur_kernel: odd kernel size of the blur.
        mean, std: per-channel normalisation.
    """
    color_jitter: Tuple[float, float, float, float, float]
    grayscale: float
    gaussian_blur: float
    solarization: float
    equalization: float
    horizontal_flip: float
    blur_kernel: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]

    def __post_init__(self) -> None:
        probs = (self.color_jitter[0], self.grayscale, self.gaussian_blur, self.solarization,
                 self.equalization, self.horizontal_flip)
        if any(not 0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"probabilities must lie in [0, 1], got {probs}")
        if any(s < 0 for s in self.color_jitter[1:]) or self.color_jitter[4] > 0.5:
            raise ValueError(f"jitter strengths must be >= 0 (hue <= 0.5), got "
                             f"{self.color_jitter[1:]}")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd and positive, got {self.blur_kernel}")

    @classmethod
    def from_node(cls, node, mean: Sequence[float], std: Sequence[float],
                  blur_kernel: int) -> "BatchedAugmentation":
        """From one checked entry of ``augmentations`` (the AUGMENTATION table's keys)."""
        cj = node.color_jitter
        return cls(color_jitter=(float(cj.prob), float(cj.brightness), float(cj.contrast),
                                 float(cj.saturation), float(cj.hue)),
                   grayscale=float(node.grayscale.prob),
                   gaussian_blur=float(node.gaussian_blur.prob),
                   solarization=float(node.solarization.prob),
                   equalization=float(node.equalization.prob),
                   horizontal_flip=float(node.horizontal_flip.prob),
                   blur_kernel=int(blur_kernel),
                   mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))

    def jitter_ranges(self) -> Dict[str, Tuple[float, float]]:
        """The factor range of each jitter op whose strength is not 0."""
        _, b, c, s, h = self.color_jitter
        ranges = {name: (max(0.0, 1.0 - v), 1.0 + v)
                  for name, v in zip(JITTER_OPS[:3], (b, c, s)) if v > 0}
        if h > 0:
            ranges["hue"] = (-h, h)
        return ranges

    def sample(self, n: int, generator: torch.Generator, device=None) -> Dict[str, torch.Tensor]:
        """Parameters of n samples: ``jitter``, ``grayscale``, ``blur``, ``solarize``,
        ``equalize``, ``flip`` (n,) bool; ``brightness``, ``contrast``, ``saturation``,
        ``hue``, ``sigma`` (n,) float; ``order`` (n, 4) a permutation of the four jitter ops
        (0 brightness, 1 contrast, 2 saturation, 3 hue) per sample."""
        device = generator.device if device is None else torch.device(device)
        u = torch.rand(n, len(_COLUMNS), generator=generator, device=device)
        col = lambda name: u[:, _COL[name]]  # noqa: E731
        params = {"jitter": col("jitter") < self.color_jitter[0]}
        ranges = self.jitter_ranges()
        for name in JITTER_OPS:
            # an op of strength 0 is never applied; its factor is the neutral one
            lo, hi = ranges.get(name, (0.0, 0.0) if name == "hue" else (1.0, 1.0))
            params[name] = lo + (hi - lo) * col(name)
        # the ranks of four uniforms: a uniform random permutation per sample
        params["order"] = u[:, _COL["order0"]:_COL["order3"] + 1].argsort(dim=1)
        params["grayscale"] = col("grayscale") < self.grayscale
        params["blur"] = col("blur") < self.gaussian_blur
        params["sigma"] = SIGMA_RANGE[0] + (SIGMA_RANGE[1] - SIGMA_RANGE[0]) * col("sigma")
        params["solarize"] = col("solarize") < self.solarization
        params["equalize"] = col("equalize") < self.equalization
        params["flip"] = col("flip") < self.horizontal_flip
        return params

    def apply(self, x: torch.Tensor, params: Dict[str, torch.Tensor],
              normalize: bool = True, dense: Optional[bool] = None) -> torch.Tensor:
        """(n, 3, H, W) uint8 or float in [0, 1] -> the augmented float32 batch (normalised
        unless ``normalize`` is False).

        ``dense`` (default: on any device but the CPU) applies each op to the whole batch and
        keeps its result where the sample's mask is set (``torch.where``): no step reads a
        tensor back to the host, which on a GPU would stall the queue once per op. On the
        CPU, where reading costs nothing and the arithmetic is the cost, the op runs on the
        selected samples only (index_select / index_copy_). Both give the same batch."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"crops must be (n, 3, H, W), got {tuple(x.shape)}")
        if dense is None:
            dense = x.device.type != "cpu"
        where = self._where_dense if dense else self._where
        x = to_float(x)  # a new tensor: the ops below write into it
        x = self._jitter(x, params, dense)
        x = where(x, params["grayscale"],
                  lambda sub, idx: TF.rgb_to_grayscale(sub, num_output_channels=3))
        x = where(x, params["blur"],
                  lambda sub, idx: gaussian_blur(sub, params["sigma"][idx], self.blur_kernel))
        x = where(x, params["solarize"], lambda sub, idx: solarize(sub))
        x = where(x, params["equalize"], lambda sub, idx: TF.equalize(sub))
        x = where(x, params["flip"], lambda sub, idx: sub.flip(-1))
        if normalize:
            mean = torch.tensor(self.mean, device=x.device).reshape(1, 3, 1, 1)
            std = torch.tensor(self.std, device=x.device).reshape(1, 3, 1, 1)
            x = x.sub_(mean).div_(std)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[0], generator, x.device))

    @staticmethod
    def _where(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
        """fn applied to the samples selected by ``mask`` only (the op's cost is paid for
        them alone; ``nonzero`` reads the mask back to the host)."""
        idx = mask.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        # index_select / index_copy_ copy whole samples; x[idx] = ... is several times
        # slower on CPUs
        return x.index_copy_(0, idx, fn(x.index_select(0, idx), idx))

    @staticmethod
    def _where_dense(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
        """fn applied to every sample, kept where ``mask`` is set; nothing read back.
        ``fn`` gets ``slice(None)`` as the index of its per-sample parameters."""
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool, got {mask.dtype}")
        return torch.where(mask.reshape(-1, 1, 1, 1), fn(x, slice(None)), x)

    def _jitter(self, x: torch.Tensor, params: Dict[str, torch.Tensor],
                dense: bool = False) -> torch.Tensor:
        active = [i for i, name in enumerate(JITTER_OPS) if name in self.jitter_ranges()]
        if not self.color_jitter[0] or not active:
            return x
        order, factors = params["order"], [params[name] for name in JITTER_OPS]
        if dense:
            # step t applies, to each jittered sample, the op its permutation puts at t
            for step in range(4):
                for op in active:
                    mask = params["jitter"] & (order[:, step] == op)
                    x = torch.where(mask.reshape(-1, 1, 1, 1),
                                    _JITTER_FNS[op](x, factors[op]), x)
            return x
        idx = params["jitter"].nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        sub = x.index_select(0, idx)
        order = order[idx]
        factors = [f[idx] for f in factors]
        for step in range(4):
            for op in active:
                pick = (order[:, step] == op).nonzero().squeeze(1)
                if pick.numel():
                    done = _JITTER_FNS[op](sub.index_select(0, pick), factors[op][pick])
                    sub.index_copy_(0, pick, done)
        return x.index_copy_(0, idx, sub)


class CropAugmenter:
    """The crops of a batch (the host's list: one (B, 3, H, W) tensor per crop) -> the
    augmented float crops, crop i by ``pipelines[i]``. Crops sharing a pipeline (the
    ``num_crops`` crops of one node) run as one batch, parameters drawn per sample."""

    def __init__(self, pipelines: Sequence[BatchedAugmentation]) -> None:
        if len(pipelines) == 0:
            raise ValueError("CropAugmenter needs at least one pipeline")
        self.pipelines = list(pipelines)

    def __len__(self) -> int:
        return len(self.pipelines)

    def __call__(self, crops: Sequence[torch.Tensor], generator: torch.Generator
                 ) -> List[torch.Tensor]:
        if len(crops) != len(self.pipelines):
            raise ValueError(f"the batch has {len(crops)} crops but the augmentations give "
                             f"{len(self.pipelines)}")
        groups: Dict[int, List[int]] = {}
        for i, pipeline in enumerate(self.pipelines):
            groups.setdefault(id(pipeline), []).append(i)
        out: List[torch.Tensor] = [None] * len(crops)  # type: ignore[list-item]
        for members in groups.values():
            pipeline = self.pipelines[members[0]]
            sizes = [crops[i].shape[0] for i in members]
            joined = pipeline(torch.cat([crops[i] for i in members]), generator)
            for i, part in zip(members, joined.split(sizes)):
                out[i] = part
        return out
