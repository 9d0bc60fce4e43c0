"""bench/twin_separation.py: its metrics on a hand-computed case and its probe on data a
linear model separates."""
import math

import numpy as np
import pytest
import torch

from tests.helpers import load_bench


def test_twin_metrics_hand_computed():
    ts = load_bench("twin_separation")
    # classes 0/1 share prototype 0, class 2 is alone, classes 3/4 share prototype 2
    class_prototype = np.array([0, 0, 1, 2, 2])
    target = np.array([0, 1, 2, 3, 4, 0])
    pred = np.array([1, 1, 2, 0, 4, 0])
    res = ts.twin_metrics(pred, target, class_prototype)
    assert res["top1"] == pytest.approx(4 / 6)
    assert res["prototype_acc"] == pytest.approx(5 / 6)  # image 3: prototype 0 for 2
    # twin images with the right prototype: 0, 1, 4, 5 (2 is no twin, 3 has the wrong
    # prototype); right class among them: 1, 4, 5
    assert res["twin_images"] == 4
    assert res["twin_separation"] == pytest.approx(3 / 4)
    assert res["twin_chance"] == pytest.approx(1 / 2)


def test_twin_chance_is_the_mean_over_images_of_one_over_the_group_size():
    ts = load_bench("twin_separation")
    class_prototype = np.array([0, 0, 0, 1, 1])  # a triple and a pair
    target = np.array([0, 1, 3])
    res = ts.twin_metrics(target, target, class_prototype)
    assert res["twin_separation"] == 1.0
    assert res["twin_chance"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)


def test_no_twin_images_gives_nan():
    ts = load_bench("twin_separation")
    res = ts.twin_metrics(np.array([0, 1]), np.array([0, 1]), np.array([0, 1]))
    assert res["twin_images"] == 0 and math.isnan(res["twin_separation"])


def test_probe_separates_linearly_separable_classes():
    ts = load_bench("twin_separation")
    g = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.eye(3, 5)
    y = torch.arange(3).repeat_interleave(20)
    x = centres[y] + 0.3 * torch.randn(60, 5, generator=g)
    y_test = torch.arange(3).repeat(5)
    x_test = centres[y_test] + 0.3 * torch.randn(15, 5, generator=g)
    res = ts.evaluate((x, y), (x_test, y_test), np.array([0, 0, 1]))
    assert res["top1"] == 1.0 and res["twin_separation"] == 1.0
    assert res["twin_chance"] == pytest.approx(0.5)
