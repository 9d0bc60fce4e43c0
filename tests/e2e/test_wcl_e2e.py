"""A tiny end-to-end WCL run through the real runner: synthetic CUB (CUB layout on disk) ->
pretrain wcl with KNN multi-crop switched on after a 1-epoch warm-up -> resume from the
checkpoint (the neighbour table comes back) -> linear evaluation; and the two WCL bench
scripts in --quick mode (output structure only, no speed assertion)."""
import csv
import json
import os
import shutil
import statistics

import pytest
import torch

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.data.knn_multicrop import NeighbourTable
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import load_bench, yaml_linear_cfg, yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(root, out_dir, max_epochs, resume=None):
    cfg = yaml_pretrain_cfg("wcl_synthetic_cub", "wcl_multicrop_32", root, out_dir, max_epochs)
    # num_workers = 0: the neighbour choices are then observable in this process.
    # lr warmup shorter than the first run: solo-learn's warmup-cosine divides by
    # (max_epochs - warmup_epochs) and fails on a resume when they are equal
    cfg.scheduler.warmup_epochs = 1
    cfg.method_kwargs.knn_warmup_epochs = 1
    cfg.method_kwargs.knn_k = 3
    cfg.resume_from_checkpoint = resume
    cfg.overwrite = resume is not None  # the continued run replaces the finished one
    return cfg


@pytest.mark.slow
def test_wcl_knn_multicrop_after_warmup_resume_then_linear(tiny_cub, tmp_path, monkeypatch):
    calls = []  # (epoch, active, index, small-crop sources, the table row at that time)
    sources = NeighbourTable.sources

    def spy(self, index, num, seed=0):
        out = sources(self, index, num, seed)
        calls.append((self.epoch, self.active, index, out, self.neighbours[index].tolist()))
        return out

    monkeypatch.setattr(NeighbourTable, "sources", spy)
    ckpt = pretrain(_cfg(tiny_cub, str(tmp_path / "runs"), max_epochs=2))
    run_dir = os.path.dirname(ckpt)

    by_epoch = {e: [c for c in calls if c[0] == e] for e in (0, 1)}
    assert len(by_epoch[0]) == len(by_epoch[1]) == 36  # 36 training images, 3 steps of 12
    # warm-up epoch: standard multi-crop, the small crops are the image itself
    assert all(not active and src == [i, i] for _, active, i, src, _ in by_epoch[0])
    # after it: both small crops from the image's 3 nearest neighbours, never itself
    for _, active, i, src, row in by_epoch[1]:
        assert active and set(src) <= set(row) and i not in row and len(set(row)) == 3

    state = safe_load(ckpt)["state_dict"]
    assert bool(state["knn.valid"]) and int(state["knn.epoch"]) == 2
    table = state["knn.neighbours"]
    assert table.shape == (36, 3)
    assert not (table == torch.arange(36)[:, None]).any()
    with open(os.path.join(run_dir, "logs", "metrics.csv")) as f:
        header = next(csv.reader(f))
    for key in ("train_nce_loss_epoch", "train_swap_loss_epoch", "train_cnce_loss_epoch",
                "train_cswap_loss_epoch", "weak_num_components_epoch",
                "weak_mean_component_size_epoch", "weak_purity_epoch", "knn_neighbour_purity"):
        assert key in header, key

    # resume: the table of the checkpoint drives the next epoch's small crops
    resume = str(tmp_path / "resume.ckpt")
    shutil.copy(os.path.join(run_dir, "last.ckpt"), resume)
    resumed_table = safe_load(resume)["state_dict"][
        "knn.neighbours"]
    calls.clear()
    ckpt = pretrain(_cfg(tiny_cub, str(tmp_path / "runs"), max_epochs=3, resume=resume))
    assert {c[0] for c in calls} == {2} and len(calls) == 36
    for _, active, i, src, row in calls:
        assert active and row == resumed_table[i].tolist() and set(src) <= set(row)

    res = linear_eval(yaml_linear_cfg("wcl_synthetic_cub", ckpt, tiny_cub))
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
    assert res["method"] == "wcl" and res["num_train"] == 36 and res["num_test"] == 36


def json_load(path):
    with open(path) as f:
        return json.load(f)


def test_weak_labels_bench_quick_output(tmp_path, capsys):
    out = tmp_path / "wl.json"
    res = load_bench("weak_labels").main(["--quick", "--rounds", "2", "--json", str(out)])
    assert json_load(out) == res
    assert [row["batch"] for row in res["rows"]] == [256]
    row = res["rows"][0]
    assert set(row["seconds"]) == {"similarity_top1", "scipy", "torch"}
    assert all(t > 0 for t in row["seconds"].values())
    rounds = row["per_round_seconds"]
    assert len(rounds["torch"]) == 2
    assert row["seconds"]["torch"] == pytest.approx(statistics.median(rounds["torch"]))
    # medians of per-round ratios, not ratios of medians
    assert row["scipy_over_torch"] == pytest.approx(statistics.median(
        [s / t for s, t in zip(rounds["scipy"], rounds["torch"])]))
    assert row["torch_over_similarity"] == pytest.approx(statistics.median(
        [t / s for t, s in zip(rounds["torch"], rounds["similarity_top1"])]))
    assert "scipy/torch" in capsys.readouterr().out


def test_wcl_step_bench_quick_output(tmp_path, capsys):
    out = tmp_path / "ws.json"
    res = load_bench("wcl_step").main(["--quick", "--batch", "8", "--hidden", "64",
                                        "--small-crops", "1", "--json", str(out)])
    assert json_load(out) == res
    assert set(res["median_seconds"]) == {"simclr", "wcl", "wcl+multicrop"}
    assert set(res["median_ratio_to_simclr"]) == {"wcl", "wcl+multicrop"}
    assert res["rounds"] == 2 and res["batch"] == 8
    assert all(r > 0 for r in res["median_ratio_to_simclr"].values())
    assert "x simclr" in capsys.readouterr().out
