"""bench/weak_labels.py's step-share section on a tiny budget: the shares are medians of the
per-round ratios to the WCL step it times, and the JSON holds what main returns (no speed
assertion)."""
import json
import statistics

import pytest

from tests.helpers import load_bench


def test_step_share_is_the_median_of_per_round_ratios_to_the_wcl_step(tmp_path, capsys):
    out = tmp_path / "wl.json"
    res = load_bench("weak_labels").main(["--quick", "--rounds", "3", "--step-batches", "8",
                                          "--hidden", "32", "--json", str(out)])
    assert json.loads(out.read_text()) == res
    (row,) = res["step_share"]
    assert row["batch"] == 8 and row["views"] == 2 and row["backbone"] == "test_resnet"
    assert row["weak_label_backend"] == "torch"  # the method's default is what is timed
    rounds = row["per_round_seconds"]
    assert set(rounds) == {"wcl_step", "labelling", "labelling_scipy", "weak_labels"}
    assert all(len(r) == 3 and min(r) > 0 for r in rounds.values())
    for name, share in row["share_of_step"].items():
        assert share == pytest.approx(statistics.median(
            [t / s for t, s in zip(rounds[name], rounds["wcl_step"])]))
    assert row["seconds"]["wcl_step"] == pytest.approx(statistics.median(rounds["wcl_step"]))
    assert "share of one wcl training step" in capsys.readouterr().out
