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


def test_groups_split_the_table_into_disjoint_parts():
    quality = load_bench("quality")
    rows = [row for group in quality.GROUPS.values() for row in group]
    assert sorted(rows) == sorted(quality.SPECS)  # every row once
    with pytest.raises(SystemExit):
        quality.main(["--group", "attributes", "--methods", "simclr"])


def test_another_data_seed_gets_its_own_directory(tmp_path, monkeypatch):
    quality = load_bench("quality")
    from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

    made = []

    def ensure(root, params):  # records the request, writes a small dataset of its seed
        made.append((root, params))
        generate_synthetic_cub(root, **dict(SMALL, seed=params["seed"]))

    monkeypatch.setattr(quality, "DEFAULT_DATA_ROOT", str(tmp_path / "bench"))
    monkeypatch.setattr(quality, "ensure_bench_data", ensure)
    monkeypatch.setattr(quality, "run_one", lambda *a, **k: {
        "top1": 1.0, "top5": 2.0, "sec_per_epoch": 0.1, "clusters": None})
    quality.main(["--data-seed", "3", "--methods", "simclr", "--seeds", "0",
                  "--data-root", str(tmp_path / "bench"), "--out", str(tmp_path / "q.json")])
    assert made == [(str(tmp_path / "bench") + "-seed3", dict(quality.BENCH_DATA, seed=3))]
    assert json.loads((tmp_path / "q.json").read_text())["data"]["seed"] == 3
