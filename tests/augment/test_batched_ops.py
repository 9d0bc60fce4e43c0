"""The batched ops of ``data.augment_on: device`` equal torchvision.transforms.v2.functional
applied to each image with the same parameters.

Reference: the float image x / 255 of a uint8 crop, through v2.functional one image at a
time. Tolerance 1e-5 on the [0, 1] scale (float32 rounding of a different but equivalent
order of operations; 1/255 = 3.9e-3 is a uint8 step) and 1e-4 after normalisation (division
by std ~0.22). Equalization works on the image quantised to uint8 (as torchvision does for
floats), so it is compared on its own, exactly, where its input is uint8-valued.
"""
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms.v2 import functional as TF

from clinfonce_plugin.augment.batched import (BatchedAugmentation, CropAugmenter,
                                              adjust_brightness, adjust_contrast, adjust_hue,
                                              adjust_saturation, gaussian_blur, solarize)

ATOL = 1e-5
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _crops(n=12, h=20, w=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
    # the hue's special cases: grey pixels, and ties of the maximum (r == g, g == b, r == b)
    x[:, :, :2] = x[:, :1, :2]
    x[:, 1, 2:4] = x[:, 0, 2:4]
    x[:, 2, 4:6] = x[:, 1, 4:6]
    x[:, 2, 6:8] = x[:, 0, 6:8]
    return x


def _reference_each(x, fn, factors):
    return torch.stack([fn(x[i], float(factors[i])) for i in range(x.shape[0])])


@pytest.mark.parametrize("ours, theirs, lo, hi", [
    (adjust_brightness, TF.adjust_brightness, 0.0, 2.0),
    (adjust_contrast, TF.adjust_contrast, 0.0, 2.0),
    (adjust_saturation, TF.adjust_saturation, 0.0, 2.0),
    (adjust_hue, TF.adjust_hue, -0.5, 0.5),
])
def test_jitter_op_equals_torchvision_per_image(ours, theirs, lo, hi):
    x = _crops().float() / 255
    factors = torch.linspace(lo, hi, x.shape[0])  # both ends of the range included
    out = ours(x.clone(), factors)
    torch.testing.assert_close(out, _reference_each(x, theirs, factors), atol=ATOL, rtol=0)


def test_hue_of_a_grey_image_is_unchanged_and_a_half_turn_swaps_complements():
    grey = torch.full((1, 3, 2, 2), 0.3)
    assert torch.equal(adjust_hue(grey, torch.tensor([0.37])), grey)
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    torch.testing.assert_close(adjust_hue(red, torch.tensor([0.5])),
                               torch.tensor([0.0, 1.0, 1.0]).reshape(1, 3, 1, 1))
    torch.testing.assert_close(adjust_hue(red, torch.tensor([1 / 3])),  # red -> green
                               torch.tensor([0.0, 1.0, 0.0]).reshape(1, 3, 1, 1))


@pytest.mark.parametrize("kernel", [3, 5, 23])
def test_blur_with_a_sigma_per_image_equals_torchvision(kernel):
    x = _crops(n=6, h=30, w=26).float() / 255
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.3, 1.7, 2.0])
    out = gaussian_blur(x.clone(), sigma, kernel)
    ref = torch.stack([TF.gaussian_blur(x[i], [kernel, kernel], [float(s), float(s)])
                       for i, s in enumerate(sigma)])
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_solarize_equals_torchvision_threshold_128_on_uint8_values():
    x = _crops()
    x[0, 0, 0, :3] = torch.tensor([127, 128, 129], dtype=torch.uint8)  # the threshold
    out = solarize(x.float() / 255)
    assert torch.equal((out * 255).round().to(torch.uint8), TF.solarize(x, 128))


def _node(**probs):
    node = {"crop_size": 20, "num_crops": 2,
            "rrc": {"enabled": True, "crop_min_scale": 0.3, "crop_max_scale": 1.0},
            "color_jitter": {"prob": 0.0, "brightness": 0.4, "contrast": 0.4, "saturation": 0.2,
                             "hue": 0.1},
            "grayscale": {"prob": 0.0}, "gaussian_blur": {"prob": 0.0},
            "solarization": {"prob": 0.0}, "equalization": {"prob": 0.0},
            "horizontal_flip": {"prob": 0.0}}
    for key, value in probs.items():
        node[key]["prob"] = value
    return OmegaConf.create(node)


JITTER_FNS = {0: TF.adjust_brightness, 1: TF.adjust_contrast, 2: TF.adjust_saturation,
              3: TF.adjust_hue}
JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


def _reference_pipeline(pipe, x, p):
    """The CPU pipeline's order (RandomApply(ColorJitter), RandomGrayscale, blur, solarize,
    equalize, flip, normalise), one image at a time through v2.functional."""
    out = []
    for i in range(x.shape[0]):
        img = x[i].float() / 255
        if p["jitter"][i]:
            for op in p["order"][i].tolist():
                img = JITTER_FNS[op](img, float(p[JITTER_NAMES[op]][i]))
        if p["grayscale"][i]:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if p["blur"][i]:
            s = float(p["sigma"][i])
            img = TF.gaussian_blur(img, [pipe.blur_kernel] * 2, [s, s])
        if p["solarize"][i]:
            img = TF.solarize(img, 128 / 255)
        if p["equalize"][i]:
            img = TF.equalize(img)
        if p["flip"][i]:
            img = TF.horizontal_flip(img)
        out.append(TF.normalize(img, list(MEAN), list(STD)))
    return torch.stack(out)


def test_pipeline_with_drawn_parameters_equals_torchvision_in_the_cpu_order():
    pipe = BatchedAugmentation.from_node(
        _node(color_jitter=0.8, grayscale=0.3, gaussian_blur=0.5, solarization=0.3,
              horizontal_flip=0.5), MEAN, STD, blur_kernel=5)
    x = _crops(n=64)
    params = pipe.sample(64, torch.Generator().manual_seed(3))
    # every op is exercised on some samples and skipped on others
    for key in ("jitter", "grayscale", "blur", "solarize", "flip"):
        assert 0 < int(params[key].sum()) < 64, key
    out = pipe.apply(x, params)
    torch.testing.assert_close(out, _reference_pipeline(pipe, x, params), atol=1e-4, rtol=0)


def test_equalization_equals_torchvision_on_uint8_valued_crops():
    pipe = BatchedAugmentation.from_node(_node(equalization=0.5, horizontal_flip=0.5),
                                         MEAN, STD, blur_kernel=5)
    x = _crops(n=32)
    x[0] = x[0] // 4  # a low-contrast image: equalization spreads it
    x[1] = 7  # a constant image: torchvision leaves it as it is
    params = pipe.sample(32, torch.Generator().manual_seed(1))
    params["equalize"][:2] = True
    out = pipe.apply(x, params)
    torch.testing.assert_close(out, _reference_pipeline(pipe, x, params), atol=1e-4, rtol=0)
    assert 0 < int(params["equalize"].sum()) < 32


def test_uint8_and_float_input_give_the_same_output_and_the_input_is_untouched():
    pipe = BatchedAugmentation.from_node(
        _node(color_jitter=1.0, grayscale=0.5, gaussian_blur=0.5, horizontal_flip=0.5),
        MEAN, STD, blur_kernel=3)
    x = _crops()
    xf = x.float() / 255
    before = xf.clone()
    params = pipe.sample(x.shape[0], torch.Generator().manual_seed(0))
    torch.testing.assert_close(pipe.apply(x, params), pipe.apply(xf, params), atol=0, rtol=0)
    assert torch.equal(xf, before)


def test_without_random_ops_the_pipeline_only_normalises():
    pipe = BatchedAugmentation.from_node(_node(), MEAN, STD, blur_kernel=3)
    x = _crops()
    out = pipe(x, torch.Generator().manual_seed(0))
    ref = TF.normalize(x.float() / 255, list(MEAN), list(STD))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_crop_augmenter_batches_crops_of_one_node_and_keeps_the_crop_order():
    large = BatchedAugmentation.from_node(_node(color_jitter=0.8, horizontal_flip=0.5),
                                          MEAN, STD, blur_kernel=3)
    small = BatchedAugmentation.from_node(_node(grayscale=0.5), (0.5,) * 3, (0.25,) * 3,
                                          blur_kernel=3)
    augmenter = CropAugmenter([large, large, small, small])
    crops = [_crops(n=5, h=12, w=12, seed=s) for s in (1, 2)] + \
            [_crops(n=5, h=6, w=6, seed=s) for s in (3, 4)]
    out = augmenter(crops, torch.Generator().manual_seed(9))
    assert [tuple(o.shape) for o in out] == [(5, 3, 12, 12)] * 2 + [(5, 3, 6, 6)] * 2
    # by hand: one draw for the 10 large crops, then one for the 10 small ones
    g = torch.Generator().manual_seed(9)
    p_large = large.sample(10, g)
    expected_large = large.apply(torch.cat(crops[:2]), p_large)
    expected_small = small.apply(torch.cat(crops[2:]), small.sample(10, g))
    torch.testing.assert_close(torch.cat(out[:2]), expected_large, atol=0, rtol=0)
    torch.testing.assert_close(torch.cat(out[2:]), expected_small, atol=0, rtol=0)
    # the two views of an image got independent parameters
    assert not torch.equal(p_large["brightness"][:5], p_large["brightness"][5:])
    with pytest.raises(ValueError, match="3 crops but the augmentations give 4"):
        augmenter(crops[:3], torch.Generator())


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    pipe = BatchedAugmentation.from_node(
        _node(color_jitter=0.8, grayscale=0.2, gaussian_blur=0.5, solarization=0.2,
              equalization=0.2, horizontal_flip=0.5), MEAN, STD, blur_kernel=5)
    x = _crops(n=16)
    a = pipe(x, torch.Generator().manual_seed(123))
    b = pipe(x, torch.Generator().manual_seed(123))
    c = pipe(x, torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("bad, match", [
    (dict(grayscale=1.5), "probabilities"),
    (dict(blur_kernel=4), "odd"),
    (dict(color_jitter=(0.5, 0.4, 0.4, 0.2, 0.6)), "hue <= 0.5"),
])
def test_invalid_pipeline_arguments_are_refused(bad, match):
    args = dict(color_jitter=(0.5, 0.4, 0.4, 0.2, 0.1), grayscale=0.1, gaussian_blur=0.0,
                solarization=0.0, equalization=0.0, horizontal_flip=0.5, blur_kernel=3,
                mean=MEAN, std=STD)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        BatchedAugmentation(**args)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_dense_path_equals_the_selective_path(seed):
    # dense (default off the CPU: every op on the whole batch, kept by torch.where, nothing
    # read back) and selective (the CPU's: each op on its samples only) give one batch
    pipe = BatchedAugmentation.from_node(
        _node(color_jitter=0.8, grayscale=0.3, gaussian_blur=0.5, solarization=0.3,
              equalization=0.3, horizontal_flip=0.5), MEAN, STD, blur_kernel=5)
    x = _crops(n=48, seed=seed)
    params = pipe.sample(48, torch.Generator().manual_seed(seed))
    for key in ("jitter", "grayscale", "blur", "solarize", "equalize", "flip"):
        assert 0 < int(params[key].sum()) < 48, key
    dense = pipe.apply(x, params, dense=True)
    torch.testing.assert_close(dense, pipe.apply(x, params, dense=False), atol=1e-5, rtol=0)
