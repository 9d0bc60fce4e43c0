"""bench/quality.py's data cache: generated, reused, regenerated when BENCH_DATA changed,
and never overwriting a directory that is not a synthetic CUB."""
import json

import pytest

from tests.helpers import load_bench

SMALL = {"seed": 0, "num_classes": 3, "images_per_class": 4}


def params(root):
    return json.loads((root / "synthetic_cub.json").read_text())["params"]


def test_generates_reuses_and_regenerates_a_stale_cache(tmp_path):
    quality = load_bench("quality")
    root = tmp_path / "bench"
    quality.ensure_bench_data(str(root), SMALL)
    assert params(root)["cue_scale"] == 1.0
    stamp = (root / "synthetic_cub.json").stat().st_mtime_ns
    quality.ensure_bench_data(str(root), SMALL)  # same parameters: reused
    assert (root / "synthetic_cub.json").stat().st_mtime_ns == stamp
    quality.ensure_bench_data(str(root), {**SMALL, "cue_scale": 1.6})  # BENCH_DATA changed
    assert params(root)["cue_scale"] == 1.6


def test_leaves_a_directory_that_is_not_a_synthetic_cub_alone(tmp_path):
    quality = load_bench("quality")
    root = tmp_path / "bench"
    root.mkdir()
    (root / "images.txt").write_text("1 a.jpg\n")
    with pytest.raises(SystemExit, match="holds no synthetic CUB"):
        quality.ensure_bench_data(str(root), SMALL)
    assert (root / "images.txt").read_text() == "1 a.jpg\n"
