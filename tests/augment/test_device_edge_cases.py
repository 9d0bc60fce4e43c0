"""The batched augmentation stays finite and exact where a pixel's channel range is below
float32's resolution at 1 (2**-24): the case that made ``data.augment_on=device`` give a NaN
loss on a GPU.

The hue rotation divides by the pixel's range max - min. It used to form that divisor as
``delta + 1 - ceil(delta)``, which is 0 for 0 < delta <= 2**-24 (1 + delta rounds to 1),
so such a pixel became 0 / 0 or x / 0 and the whole batch NaN. The contrast blend makes
such pixels: near black, ``x * f + mean * (1 - f)`` with f > 1 cancels to a few 1e-9.
Which batch first holds one depends on the random parameters, so the GPU (another random
stream) met it at step 4 and the CPU runs by chance did not.

The references are torchvision.transforms.v2.functional in float64.
"""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms.v2 import functional as TF

from clinfonce_plugin.augment.batched import (BatchedAugmentation, adjust_contrast,
                                              adjust_hue)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESOLUTION_AT_ONE = 2.0 ** -24
RANGES = [1e-30, 1e-12, 2.0 ** -26, 2.0 ** -25, 2.0 ** -24, 1e-7, 3e-7, 1e-6, 1e-3]


def _tiny_range_pixels() -> torch.Tensor:
    """(1, 3, 1, N): pixels whose channel range is each of RANGES, near black, mid-grey and
    near white, with the maximum in each channel in turn."""
    cols = []
    for base in (0.0, 0.5, 1.0):
        for delta in RANGES:
            for top in range(3):
                lo = base - delta if base == 1.0 else base
                px = [lo, lo + delta / 3, lo]
                px[top] = lo + delta
                px[(top + 1) % 3] = lo + delta / 3
                cols.append(px)
    return torch.tensor(cols, dtype=torch.float64).T.reshape(1, 3, 1, -1)


def _hue_reference(x: torch.Tensor, shift: float) -> torch.Tensor:
    return TF.adjust_hue(x.double(), shift).to(x.dtype)


@pytest.mark.parametrize("shift", [-0.5, -0.05, 0.0, 0.05, 0.3])
def test_hue_is_finite_and_exact_where_the_channel_range_is_tiny(shift):
    x64 = _tiny_range_pixels()
    x = x64.float()
    # the pixels really have ranges below 2**-24 in float32 (else this test tests nothing)
    r, g, b = x.unbind(dim=-3)
    ranges = torch.maximum(torch.maximum(r, g), b) - torch.minimum(torch.minimum(r, g), b)
    assert ((ranges > 0) & (ranges <= RESOLUTION_AT_ONE)).sum() >= 9
    out = adjust_hue(x.clone(), torch.tensor([shift]))
    assert torch.isfinite(out).all()
    # a rotation moves every channel within [min, max] of its pixel
    torch.testing.assert_close(out, _hue_reference(x, shift), atol=1e-6, rtol=0)


def _contrast_cancelling_to_below_resolution():
    """A crop and a contrast factor whose blend leaves a near-black pixel's red at
    0 < r < 2**-24 with green and blue clamped to 0: the contrast factor is searched on the
    float32 grid around the root of ``x * f + mean * (1 - f) = 0``."""
    img = torch.tensor([[20, 255], [0, 255], [0, 255]], dtype=torch.uint8).reshape(1, 3, 1, 2)
    x = img.float() / 255
    mean = float(TF.rgb_to_grayscale(x).mean())
    root = np.float32(mean / (mean - 20 / 255))
    ulp = np.float32(np.spacing(root))
    for i in range(-4000, 4001):
        f = float(root + np.float32(i) * ulp)
        out = adjust_contrast(x.clone(), torch.tensor([f]))
        if 0 < float(out[0, 0, 0, 0]) < RESOLUTION_AT_ONE:
            return img, f, out
    raise AssertionError("no contrast factor near the root gives a red below 2**-24")


def test_contrast_then_hue_on_a_cancelling_near_black_pixel_is_finite():
    img, f, contrasted = _contrast_cancelling_to_below_resolution()
    assert float(contrasted[0, 1, 0, 0]) == 0.0 and float(contrasted[0, 2, 0, 0]) == 0.0
    out = adjust_hue(contrasted.clone(), torch.tensor([0.05]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _hue_reference(contrasted, 0.05), atol=1e-7, rtol=0)


def _node(**probs):
    node = {"crop_size": 2, "num_crops": 1,
            "rrc": {"enabled": True, "crop_min_scale": 0.3, "crop_max_scale": 1.0},
            "color_jitter": {"prob": probs.get("color_jitter", 0.0), "brightness": 0.4,
                             "contrast": 0.4, "saturation": 0.2, "hue": 0.1}}
    for key in ("grayscale", "gaussian_blur", "solarization", "equalization",
                "horizontal_flip"):
        node[key] = {"prob": probs.get(key, 0.0)}
    return OmegaConf.create(node)


def test_the_pipeline_with_contrast_before_hue_on_that_crop_is_finite_and_in_range():
    img, f, _ = _contrast_cancelling_to_below_resolution()
    pipe = BatchedAugmentation.from_node(_node(color_jitter=1.0), MEAN, STD, blur_kernel=1)
    params = pipe.sample(1, torch.Generator().manual_seed(0))
    params["brightness"] = torch.tensor([1.0])
    params["saturation"] = torch.tensor([1.0])
    params["contrast"] = torch.tensor([f])
    params["hue"] = torch.tensor([0.05])
    params["order"] = torch.tensor([[0, 1, 2, 3]])  # contrast before hue
    out = pipe.apply(img, params)
    assert torch.isfinite(out).all()
    lo = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    hi = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert (out >= lo.reshape(1, 3, 1, 1) - 1e-6).all()
    assert (out <= hi.reshape(1, 3, 1, 1) + 1e-6).all()


def _edge_case_crops(n: int, seed: int) -> torch.Tensor:
    """uint8 crops with near-black and near-white flat regions beside random pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    x[:, :, :4] = torch.randint(0, 24, (n, 3, 1, 1), generator=g, dtype=torch.uint8)
    x[:, :, 4:8] = 255 - torch.randint(0, 24, (n, 3, 1, 1), generator=g, dtype=torch.uint8)
    return x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_pipeline_is_finite_in_range_and_equals_the_cpu_pipeline():
    pipe = BatchedAugmentation.from_node(
        _node(color_jitter=0.9, grayscale=0.2, gaussian_blur=0.5, solarization=0.2,
              horizontal_flip=0.5), MEAN, STD, blur_kernel=5)
    lo = ((0 - torch.tensor(MEAN)) / torch.tensor(STD)).reshape(1, 3, 1, 1).cuda()
    hi = ((1 - torch.tensor(MEAN)) / torch.tensor(STD)).reshape(1, 3, 1, 1).cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    for seed in range(20):
        crops = _edge_case_crops(256, seed)
        params = pipe.sample(256, torch.Generator().manual_seed(seed))
        out = pipe.apply(crops.cuda(), {k: v.cuda() for k, v in params.items()})
        assert torch.isfinite(out).all(), seed
        assert (out >= lo - 1e-5).all() and (out <= hi + 1e-5).all(), seed
        # the blur is a convolution that cuDNN may run in TF32 (~1e-3 on the [0, 1] scale)
        torch.testing.assert_close(out.cpu(), pipe.apply(crops, params), atol=1e-2, rtol=0)
        # and the GPU's own random draws
        drawn = pipe(crops.cuda(), generator)
        assert torch.isfinite(drawn).all() and (drawn >= lo - 1e-5).all() \
            and (drawn <= hi + 1e-5).all(), seed
