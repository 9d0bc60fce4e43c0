"""The bundled runtime's per-crop augmentation ops against independent references:
torchvision.transforms.v2 (the ops this runtime used before, same random draws under the same
seed), torchvision's functional ops, and scipy's Gaussian filter for the blur."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageFilter
from scipy.ndimage import gaussian_filter
from torchvision.transforms import functional as TF
from torchvision.transforms import v2 as T

from clinfonce_plugin.host.runtime import augmentations as A

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def photo(seed: int, w: int = 60, h: int = 45) -> Image.Image:
    """A smooth colour field with noise: every op changes it (no flat or saturated areas)."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.uniform(30, 225, (5, 6, 3)).astype(np.uint8)).resize(
        (w, h), Image.BICUBIC)
    noisy = np.asarray(field).astype(float) + rng.normal(0, 15, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def node(crop_size=24, rrc=True, cj=0.8, gray=0.3, solarize=0.3, equalize=0.3, flip=0.5,
         blur=0.0):
    return OmegaConf.create({
        "rrc": {"enabled": rrc, "crop_min_scale": 0.2, "crop_max_scale": 1.0},
        "color_jitter": {"prob": cj, "brightness": 0.4, "contrast": 0.4, "saturation": 0.3,
                         "hue": 0.1},
        "grayscale": {"prob": gray}, "gaussian_blur": {"prob": blur},
        "solarization": {"prob": solarize}, "equalization": {"prob": equalize},
        "horizontal_flip": {"prob": flip}, "crop_size": crop_size, "num_crops": 1,
        "mean": list(MEAN), "std": list(STD),
    })


def v2_reference(cfg) -> T.Compose:
    """The same yaml node as torchvision.transforms.v2 ops (what this runtime built before),
    without the blur: each op draws its parameters from torch's generator in the same order."""
    ops = []
    if cfg.rrc.enabled:
        ops.append(T.RandomResizedCrop(cfg.crop_size, scale=(cfg.rrc.crop_min_scale, 1.0),
                                       interpolation=T.InterpolationMode.BICUBIC))
    else:
        ops += [T.Resize(cfg.crop_size, interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(cfg.crop_size)]
    cj = cfg.color_jitter
    if cj.prob:
        ops.append(T.RandomApply([T.ColorJitter(cj.brightness, cj.contrast, cj.saturation,
                                                cj.hue)], p=cj.prob))
    if cfg.grayscale.prob:
        ops.append(T.RandomGrayscale(p=cfg.grayscale.prob))
    if cfg.solarization.prob:
        ops.append(T.RandomSolarize(threshold=128, p=cfg.solarization.prob))
    if cfg.equalization.prob:
        ops.append(T.RandomEqualize(p=cfg.equalization.prob))
    if cfg.horizontal_flip.prob:
        ops.append(T.RandomHorizontalFlip(p=cfg.horizontal_flip.prob))
    ops += [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(MEAN, STD)]
    return T.Compose(ops)


@pytest.mark.parametrize("cfg", [node(), node(crop_size=16, gray=0.0, solarize=0.0,
                                              equalize=0.0), node(rrc=False, cj=0.0, gray=0.0,
                                                                  solarize=0.0, equalize=0.0,
                                                                  flip=0.0)],
                         ids=["every-op", "jitter-flip", "eval"])
def test_pipeline_equals_torchvision_v2_under_the_same_seed(cfg):
    ours, reference = A.build_transform_pipeline("custom", cfg), v2_reference(cfg)
    for seed in range(40):
        img = photo(seed % 5)
        torch.manual_seed(seed)
        expected, expected_next = reference(img), torch.rand(1)
        torch.manual_seed(seed)
        got, got_next = ours(img), torch.rand(1)
        assert got.shape == (3, cfg.crop_size, cfg.crop_size) and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        assert got_next == expected_next  # the same number of draws from the generator


def test_hue_equals_torchvision_value_for_value():
    img = photo(0)
    for factor in [-0.5, -0.2, -0.1, -0.01, -0.003, 0.0, 0.002, 0.05, 0.1, 0.37, 0.5]:
        expected = np.asarray(TF.adjust_hue(img, factor))
        assert np.array_equal(np.asarray(A.adjust_hue(img, factor)), expected), factor
    with pytest.raises(ValueError, match="hue factor"):
        A.adjust_hue(img, 0.6)


def test_grayscale_equals_torchvision_value_for_value():
    img = photo(1)
    expected = np.asarray(TF.rgb_to_grayscale(img, num_output_channels=3))
    got = A.Grayscale()(img)
    assert got.mode == "RGB" and np.array_equal(np.asarray(got), expected)


def test_normalised_tensor_equals_torchvision():
    img = photo(2)
    expected = T.Normalize(MEAN, STD)(T.ToDtype(torch.float32, scale=True)(T.ToImage()(img)))
    got = A.ToNormalizedTensor(MEAN, STD)(img)
    assert got.is_contiguous() and got.shape == (3, 45, 60)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # hand-computed pixel: (x / 255 - mean) / std
    x = np.asarray(img)[7, 11]
    torch.testing.assert_close(got[:, 7, 11], torch.tensor(
        [(x[c] / 255 - MEAN[c]) / STD[c] for c in range(3)], dtype=torch.float32))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 2.0])
def test_blur_is_a_gaussian_of_standard_deviation_sigma(sigma):
    """Against scipy's sampled Gaussian: close at sigma, and clearly closer than a Gaussian
    of 0.8 sigma or 1.25 sigma (the filter's scale is the standard deviation)."""
    img = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # white noise
    blurred = np.asarray(img_filter(img, sigma)).astype(float)
    inner = (slice(8, -8), slice(8, -8))

    def error(s):
        ref = gaussian_filter(img.astype(float), sigma=(s, s, 0), mode="nearest", truncate=8)
        return np.abs(blurred - ref)[inner].mean()

    assert error(sigma) < 1.5  # mean absolute difference in grey levels (0..255)
    assert error(sigma) < 0.4 * min(error(0.8 * sigma), error(1.25 * sigma))


def img_filter(img: np.ndarray, sigma: float) -> Image.Image:
    """Our blur op at a fixed sigma."""
    op = A.GaussianBlur((sigma, sigma))
    return op(Image.fromarray(img))


@pytest.mark.parametrize("sigma", [0.3, 0.75, 1.0, 2.0])
def test_blur_edge_response_has_variance_sigma_squared(sigma):
    """The derivative of a blurred step edge is the filter's kernel: centred on the edge with
    variance sigma^2 (no kernel-size truncation)."""
    step = np.zeros((8, 64, 3), np.uint8)
    step[:, 32:] = 255
    profile = np.asarray(img_filter(step, sigma))[4, :, 0].astype(float)
    kernel = np.diff(profile)
    x = np.arange(kernel.size) + 0.5  # kernel[i] sits between pixels i and i + 1
    assert kernel.sum() == 255 and (kernel >= 0).all()
    mean = (kernel * x).sum() / 255
    assert mean == pytest.approx(31.5, abs=0.05)  # the step lies between pixels 31 and 32
    assert (kernel * (x - mean) ** 2).sum() / 255 == pytest.approx(sigma ** 2, rel=0.06)


def test_blur_sigma_is_uniform_in_its_range():
    torch.manual_seed(0)
    op = A.GaussianBlur()
    draws = np.array([op.draw_sigma() for _ in range(4000)])
    assert draws.min() >= 0.1 and draws.max() <= 2.0
    # uniform on [0.1, 2.0]: mean 1.05, quartiles 0.575 / 1.525 (4000 draws: se ~0.009)
    assert draws.mean() == pytest.approx(1.05, abs=0.04)
    assert np.quantile(draws, [0.25, 0.75]) == pytest.approx([0.575, 1.525], abs=0.05)
    # the pipeline's blur draws the same sigma as torchvision's GaussianBlur
    torch.manual_seed(7)
    expected = T.GaussianBlur(23, sigma=(0.1, 2.0)).make_params([photo(0)])["sigma"][0]
    torch.manual_seed(7)
    assert op.draw_sigma() == pytest.approx(expected)


def test_blur_is_applied_with_its_probability(monkeypatch):
    sigmas = []

    class Recording(ImageFilter.GaussianBlur):
        def __init__(self, radius):
            sigmas.append(radius)
            super().__init__(radius)

    monkeypatch.setattr(A.ImageFilter, "GaussianBlur", Recording)
    pipe = A.build_transform_pipeline("custom", node(cj=0.0, gray=0.0, solarize=0.0,
                                                     equalize=0.0, flip=0.0, blur=0.5))
    torch.manual_seed(0)
    img = photo(0)
    for _ in range(400):
        pipe(img)
    # binomial(400, 0.5): sd 10
    assert 170 <= len(sigmas) <= 230
    assert all(0.1 <= s <= 2.0 for s in sigmas)


def test_numpy_and_tensor_images_are_accepted():
    img = photo(4)
    pipe = A.build_transform_pipeline("custom", node(rrc=False, cj=0.0, gray=0.0, solarize=0.0,
                                                     equalize=0.0, flip=0.0))
    expected = pipe(img)
    torch.testing.assert_close(pipe(np.asarray(img).copy()), expected)
    torch.testing.assert_close(pipe(T.ToImage()(img)), expected)
