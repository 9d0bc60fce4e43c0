"""Smoke runs of the benchmark scripts on a tiny budget: they run from the repository and
produce the documented output structure (no speed assertions)."""
import json

import pytest
import torch

from tests.helpers import load_bench


@pytest.mark.slow
def test_quality_quick_writes_the_table_and_json(tmp_path, capsys):
    quality = load_bench("quality")
    out = tmp_path / "quality.json"
    work = tmp_path / "work"
    rows = quality.main(["--quick", "--out", str(out), "--work-dir", str(work)])
    assert list(rows) == list(quality.SPECS)  # every row of the table
    # each row keeps its own checkpoint (the dual head shares clinfonce's config and name)
    row_ckpts = {p.relative_to(work).parts[0] for p in work.rglob("*-s0.ckpt")}
    assert len(row_ckpts) == len(quality.SPECS)
    for runs in rows.values():
        assert len(runs) == 1 and 0.0 <= runs[0]["top1"] <= runs[0]["top5"] <= 100.0
        assert runs[0]["sec_per_epoch"] > 0
    assert rows["clinfonce (attributes)"][0]["clusters"]["provider"] == "attributes"
    saved = json.loads(out.read_text())
    assert saved["table"].splitlines()[0].startswith("| method | clusters | linear top-1")
    assert len(saved["table"].splitlines()) == 2 + len(quality.SPECS)
    assert saved["data"]["num_classes"] == 6  # the generated tiny dataset's parameters
    assert "| simclr |" in capsys.readouterr().out
    # the bar chart of the table beside the JSON
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_speed_quick_reports_ratios_to_simclr(tmp_path):
    speed = load_bench("speed")
    out = tmp_path / "speed.json"
    res = speed.main(["--quick", "--out", str(out)])
    (backbone, steps), = res["steps"].items()
    assert backbone == "test_resnet"
    assert steps["simclr"]["median_ratio"] == 1.0
    assert {"clinfonce", "wcl", "swav", "cluster_ce"} <= set(steps)
    assert all(r["median_ratio"] > 0 for r in steps.values())
    (b, losses), = res["losses"].items()
    assert {"nt_xent", "cl_infonce (instance ids)", "cl_infonce (clusters, out)"} <= set(losses)
    providers = res["providers"]
    assert any(k.startswith("attributes lookup") for k in providers)
    assert any(k.startswith("k-means refresh") and "simclr epoch" in k for k in providers)
    assert any("labelling adds" in k for k in providers)
    saved = json.loads(out.read_text())
    assert set(saved) >= {"host", "steps", "losses", "providers", "targets", "table"}


@pytest.mark.slow
def test_pipeline_quick_reports_rows_as_ratios_to_the_decode(tmp_path):
    pipeline = load_bench("pipeline")
    out = tmp_path / "pipeline.json"
    res = pipeline.main(["--quick", "--epochs", "0", "--cub-images", "8", "--photos", "3",
                         "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    for size in ("224", "32"):
        rows = res["rows"][size]
        assert rows["(d) decode"]["cost_vs_decode"] == 1.0
        assert {"(a) runtime", "(c) device path, worker share"} <= set(rows)
        assert all(r["images_per_s"] > 0 and r["cost_vs_decode"] > 0 for r in rows.values())
        # (no comparison of the timings themselves: on a loaded machine any order can come
        # out, and speed is measured by the bench scripts, not asserted by tests)
    assert res["files"] == {"224": 3, "32": 8}
    saved = json.loads(out.read_text())
    assert saved["table"].splitlines()[0].startswith("| pipeline | 224 px images/s per core")
    # the generated photos have photo-like sizes and content (not flat colours)
    from PIL import Image
    import numpy as np

    photo = Image.open(tmp_path / "work" / "photos" / "0000.jpg")
    assert photo.size == (500, 375) and np.asarray(photo).std() > 20
    # row (c) times what a worker of augment_on: device hands over: uint8 crops of the yaml
    crops = pipeline.device_worker_transform(pipeline.aug_nodes("symmetric_224.yaml"))(
        photo.convert("RGB"))
    assert [(c.dtype, tuple(c.shape)) for c in crops] == [(torch.uint8, (3, 224, 224))] * 2


@pytest.mark.slow
def test_kmeans_study_quick_records_each_refresh(tmp_path):
    study = load_bench("kmeans_study")
    out = tmp_path / "study.json"
    rows = study.main(["--quick", "--variants", "simclr", "k=40 (config)", "--out", str(out)])
    assert rows["simclr"]["runs"][0]["refreshes"] == []  # instance clusters: no k-means
    (refresh,) = rows["k=40 (config)"]["runs"][0]["refreshes"]  # 1 epoch: one refresh
    assert refresh["epoch"] == 0.0 and refresh["kmeans_num_clusters"] == 6.0  # quick k
    assert 0.0 <= refresh["kmeans_purity"] <= 1.0
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    # --resume keeps what the file holds and runs nothing more
    again = study.main(["--quick", "--resume", "--variants", "simclr", "--out", str(out)])
    assert again["simclr"] == saved["rows"]["simclr"]
