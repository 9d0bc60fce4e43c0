"""``study sweep``: one row per run with the run's own cluster measures, and a sweep started
again skips the runs that have a row (checked by the rows and run directories, not by
timing)."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from clinfonce_plugin.data.registry import build_dataset
from clinfonce_plugin.study.__main__ import main
from tests.helpers import slow_mi_and_cond_entropy

TINY = ["--epochs", "1", "--linear-epochs", "1", "optimizer.batch_size=12",
        "data.num_workers=0"]


def rows_of(out):
    with open(os.path.join(out, "rows.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def sweep(out, tiny_cub, *args):
    main(["sweep", "--config-name", "clinfonce_synthetic_cub", f"data.train_path={tiny_cub}",
          "--out", str(out), *args, *TINY])


@pytest.mark.slow
def test_member_sweep_rows_and_resume(tmp_path, tiny_cub, tiny_families):
    family = os.path.join(tiny_families, "fixed_h_zt.csv")
    out = tmp_path / "sweep"
    sweep(out, tiny_cub, "--family-file", family, "--members", "label_gran_0", "--seeds", "0")
    first = rows_of(out)
    assert [r["run"] for r in first] == ["member=label_gran_0/seed=0"]
    with open(os.path.join(tiny_families, "fixed_h_zt-table.csv")) as f:
        table = {r["member"]: r for r in csv.DictReader(f)}
    # the run's clusters are the member's: the same measures as the family table
    for key in ("I(Z;T)", "H(Z|T)", "H(Z)"):
        assert first[0][key] == pytest.approx(float(table["label_gran_0"][key]), abs=1e-9)
    assert 0 <= first[0]["linear_top1"] <= 100 and 0 <= first[0]["knn_top1"] <= 100
    assert first[0]["family"] == "fixed_h_zt" and first[0]["knn_k"] == 20

    # the finished run is marked in its row; its run directory goes away, so a rerun of it
    # would have to train it again and write a new row
    first[0]["linear_top1"] = -1.0
    with open(out / "rows.jsonl", "w") as f:
        f.write(json.dumps(first[0]) + "\n")
        f.write('{"run": "member=label_gran_1/seed=0", "linear_to')  # a row cut by a kill
    done_dir = out / "runs" / "clinfonce" / "member-label_gran_0-s0"
    assert done_dir.is_dir()
    for p in sorted(done_dir.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    done_dir.rmdir()

    sweep(out, tiny_cub, "--family-file", family, "--members", "label_gran_0", "label_gran_1",
          "--seeds", "0")
    rows = rows_of(out)  # every line parses: the cut line was dropped
    assert [r["run"] for r in rows] == ["member=label_gran_0/seed=0",
                                        "member=label_gran_1/seed=0"]
    assert rows[0] == first[0]                       # kept, not redone
    assert not done_dir.exists()
    assert rows[1]["H(Z|T)"] == pytest.approx(0.0, abs=1e-12)
    assert rows[1]["I(Z;T)"] == pytest.approx(float(table["label_gran_1"]["I(Z;T)"]), abs=1e-9)

    # the same --out with other settings is another sweep
    with pytest.raises(SystemExit) as exit_info:
        sweep(out, tiny_cub, "--family-file", family, "--members", "label_gran_0",
              "--seeds", "0", "optimizer.lr=0.3")
    assert exit_info.value.code == 2
    assert len(rows_of(out)) == 2


@pytest.mark.slow
def test_k_sweep_row_measures_the_final_clusters(tmp_path, tiny_cub):
    out = tmp_path / "k"
    main(["sweep", "--config-name", "clinfonce_kmeans_synthetic_cub",
          f"data.train_path={tiny_cub}", "--k", "4", "--seeds", "1", "--out", str(out), *TINY])
    (row,) = rows_of(out)
    assert row["run"] == "k=4/seed=1" and row["kind"] == "k"
    state = torch.load(row["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    ids = state["provider.ids"].numpy()
    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    mi, h = slow_mi_and_cond_entropy(ids.tolist(), np.asarray(info.labels).tolist())
    assert row["I(Z;T)"] == pytest.approx(mi, abs=1e-9)
    assert row["H(Z|T)"] == pytest.approx(h, abs=1e-9)
    assert row["clusters"] == len(set(ids.tolist())) <= 4
    with open(os.path.join(os.path.dirname(row["checkpoint"]), "args.json")) as f:
        args = json.load(f)
    assert args["method_kwargs"]["clusters"]["k"] == 4 and args["seed"] == 1


@pytest.mark.slow
def test_level_sweep_on_a_hand_made_hierarchy(tmp_path, tiny_cub):
    from clinfonce_plugin.study.data import compose_pretrain
    from clinfonce_plugin.study.plot import plot_sweeps
    from clinfonce_plugin.study.sweep import Plan, run_sweep

    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    names = [str(c) for c in info.class_names]
    # root -> two groups of three classes: level 1 one cluster, 2 two, 3 the six classes
    pairs = [["root", "g0"], ["root", "g1"]] + [[f"g{i // 3}", n] for i, n in enumerate(names)]
    overrides = [f"data.train_path={tiny_cub}", "optimizer.batch_size=12",
                 "data.num_workers=0"]
    base = compose_pretrain("clinfonce_synthetic_cub", overrides)
    base.method_kwargs.clusters = {"provider": "hierarchy", "pairs": pairs, "level": 1}
    plan = Plan(kind="level", values=[2, 3], seeds=[0], config_name="clinfonce_synthetic_cub",
                overrides=overrides, epochs=1, linear_epochs=1)
    rows = run_sweep(plan, base, str(tmp_path / "levels"))
    assert [r["run"] for r in rows] == ["level=2/seed=0", "level=3/seed=0"]
    # six classes of six images: two groups give I = 1 bit, the classes log2(6); H(Z|T) = 0
    assert rows[0]["I(Z;T)"] == pytest.approx(1.0, abs=1e-9)
    assert rows[1]["I(Z;T)"] == pytest.approx(np.log2(6), abs=1e-9)
    assert rows[0]["H(Z|T)"] == pytest.approx(0.0, abs=1e-12)
    assert rows[0]["clusters"] == 2 and rows[1]["clusters"] == 6

    bad = Plan(kind="level", values=[4], seeds=[0], config_name="clinfonce_synthetic_cub",
               overrides=overrides)
    with pytest.raises(Exception, match=r"\[4\] out of range.*1 <= level <= 3"):
        run_sweep(bad, base, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()

    written = plot_sweeps([str(tmp_path / "levels")], str(tmp_path / "plots"))
    assert str(tmp_path / "plots" / "levels.png") in written
