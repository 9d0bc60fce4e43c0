"""Over many samples (fixed seeds) each batched op is applied at its configured probability
and its parameters cover their ranges uniformly.

Counts are checked against a binomial bound of 6 standard deviations: with the fixed seeds
the tests are deterministic, and a correct sampler would fail one of the bounds with a
probability below 1e-8 for any seed, so a seed change cannot make them flaky.
"""
import itertools
import math

import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin.augment.batched import SIGMA_RANGE, BatchedAugmentation

N = 40_000
PROBS = {"color_jitter": 0.8, "grayscale": 0.2, "gaussian_blur": 0.5, "solarization": 0.2,
         "equalization": 0.1, "horizontal_flip": 0.5}
PARAM_OF = {"color_jitter": "jitter", "grayscale": "grayscale", "gaussian_blur": "blur",
            "solarization": "solarize", "equalization": "equalize",
            "horizontal_flip": "flip"}
STRENGTH = {"brightness": 0.4, "contrast": 0.8, "saturation": 1.3, "hue": 0.1}


def _within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 6 * math.sqrt(n * p * (1 - p)) + 1e-9


def _pipeline(probs=PROBS, strength=STRENGTH):
    node = {"crop_size": 8, "num_crops": 1,
            "rrc": {"enabled": True, "crop_min_scale": 0.3, "crop_max_scale": 1.0},
            "color_jitter": {"prob": probs["color_jitter"], **strength}}
    node.update({k: {"prob": v} for k, v in probs.items() if k != "color_jitter"})
    return BatchedAugmentation.from_node(OmegaConf.create(node), (0.5,) * 3, (0.5,) * 3, 3)


@pytest.fixture(scope="module")
def params():
    return _pipeline().sample(N, torch.Generator().manual_seed(2024))


@pytest.mark.parametrize("op", sorted(PROBS))
def test_each_op_is_applied_at_its_probability(params, op):
    count = int(params[PARAM_OF[op]].sum())
    assert _within_binomial(count, N, PROBS[op]), (op, count / N)


def test_ops_are_drawn_independently_of_each_other(params):
    # P(jitter and flip) = 0.8 * 0.5, P(grayscale and blur) = 0.2 * 0.5
    both = int((params["jitter"] & params["flip"]).sum())
    assert _within_binomial(both, N, 0.4)
    both = int((params["grayscale"] & params["blur"]).sum())
    assert _within_binomial(both, N, 0.1)


def _check_uniform(values: torch.Tensor, lo: float, hi: float, bins: int = 20) -> None:
    assert float(values.min()) >= lo and float(values.max()) <= hi
    # the ends are reached: P(no sample within 1e-3 of an end) = (1 - 1e-3) ** N ~ 4e-18
    width = hi - lo
    assert float(values.min()) - lo < 1e-3 * width and hi - float(values.max()) < 1e-3 * width
    counts = torch.histc(values.double(), bins=bins, min=lo, max=hi)
    for c in counts.tolist():
        assert _within_binomial(int(c), values.numel(), 1 / bins), counts


@pytest.mark.parametrize("name", sorted(STRENGTH))
def test_jitter_factors_are_uniform_over_torchvisions_ranges(params, name):
    s = STRENGTH[name]
    lo, hi = (-s, s) if name == "hue" else (max(0.0, 1 - s), 1 + s)  # ColorJitter's ranges
    _check_uniform(params[name], lo, hi)


def test_blur_sigma_is_uniform_over_0_1_to_2(params):
    assert SIGMA_RANGE == (0.1, 2.0)
    _check_uniform(params["sigma"], 0.1, 2.0)


def test_jitter_order_is_a_uniform_random_permutation(params):
    order = params["order"]
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(N, 4))
    counts = {perm: 0 for perm in itertools.permutations(range(4))}
    for row in order.tolist():
        counts[tuple(row)] += 1
    for perm, count in counts.items():
        assert _within_binomial(count, N, 1 / 24), (perm, count)


def test_probabilities_zero_and_one_are_never_and_always():
    probs = {k: (1.0 if i % 2 else 0.0) for i, k in enumerate(sorted(PROBS))}
    p = _pipeline(probs).sample(1000, torch.Generator().manual_seed(0))
    for op, prob in probs.items():
        assert int(p[PARAM_OF[op]].sum()) == int(prob * 1000), op


def test_the_applied_ops_show_in_the_images_at_their_rates():
    """From the output images, not the parameters: grayscale (equal channels) and flip (an
    image whose left and right halves differ) at their probabilities."""
    probs = dict.fromkeys(PROBS, 0.0)
    probs.update(grayscale=0.3, horizontal_flip=0.6)
    pipe = _pipeline(probs)
    n = 20_000
    x = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    x[:, 0, :, 0] = 200  # red on the left, black on the right
    out = pipe(x, torch.Generator().manual_seed(5)) * 0.5 + 0.5  # undo the normalisation
    grey = (out[:, 0] - out[:, 1]).abs().amax(dim=(1, 2)) < 1e-6
    flipped = out[:, :, :, 1].sum(dim=(1, 2)) > out[:, :, :, 0].sum(dim=(1, 2))
    assert _within_binomial(int(grey.sum()), n, 0.3)
    assert _within_binomial(int(flipped.sum()), n, 0.6)
    assert _within_binomial(int((grey & flipped).sum()), n, 0.18)
