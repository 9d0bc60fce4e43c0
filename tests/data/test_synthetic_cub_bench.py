"""The ``synthetic_cub_bench`` reader: generated with ``synthetic_cub.BENCHMARK`` at its default
root, and an existing root of other parameters refused, never replaced."""
import json
import os

import pytest

from clinfonce_plugin.data import synthetic_cub
from clinfonce_plugin.data.registry import DATASETS

# the benchmark's own parameters make 3,600 images (~9 s); the reader must pass through
# whatever BENCHMARK holds, so a small stand-in shows it as well
SMALL_BENCHMARK = {"seed": 3, "num_classes": 4, "images_per_class": 6, "cue_scale": 1.6,
                   "prototype_prob": 0.95}


@pytest.fixture
def small_benchmark(monkeypatch):
    monkeypatch.setattr(synthetic_cub, "BENCHMARK", dict(SMALL_BENCHMARK))


def test_generated_at_default_root_with_benchmark_params(tmp_path, monkeypatch, small_benchmark):
    monkeypatch.chdir(tmp_path)
    _, info, num_classes = DATASETS["synthetic_cub_bench"]("datasets/synthetic_cub_bench", "train")
    with open(tmp_path / "datasets/synthetic_cub_bench" / synthetic_cub.MANIFEST) as f:
        params = json.load(f)["params"]
    for key, value in SMALL_BENCHMARK.items():
        assert params[key] == value
    assert num_classes == 4
    # train_fraction 0.5 of 6 images per class
    assert len(info.labels) == 4 * 3


def test_missing_other_root_is_an_error(tmp_path, small_benchmark):
    with pytest.raises(FileNotFoundError, match="data.generate=true"):
        DATASETS["synthetic_cub_bench"](str(tmp_path / "absent"), "train")
    assert not (tmp_path / "absent").exists()
    DATASETS["synthetic_cub_bench"](str(tmp_path / "absent"), "train", generate=True)
    assert (tmp_path / "absent" / synthetic_cub.MANIFEST).is_file()


def test_root_of_other_parameters_is_refused_and_kept(tmp_path, small_benchmark):
    root = tmp_path / "other"
    synthetic_cub.generate_synthetic_cub(root, seed=3, num_classes=4, images_per_class=6)
    before = sorted(os.listdir(root))
    manifest = (root / synthetic_cub.MANIFEST).read_bytes()
    with pytest.raises(ValueError, match="not a synthetic CUB dataset with these parameters"):
        DATASETS["synthetic_cub_bench"](str(root), "train")
    assert sorted(os.listdir(root)) == before
    assert (root / synthetic_cub.MANIFEST).read_bytes() == manifest
