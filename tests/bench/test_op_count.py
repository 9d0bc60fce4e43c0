"""bench/op_count.py: its counter on a hand-counted computation, and a quick run's output."""
import json

import torch

from tests.helpers import load_bench


def test_counter_counts_forward_and_backward_ops_by_region():
    oc = load_bench("op_count")
    tracker = oc.Tracker()
    x = torch.ones(3, requires_grad=True)
    with oc.Tagger(tracker), oc.Counting(tracker):
        with tracker.region("a"):
            y = x * 2  # forward: mul
        loss = y.sum()  # forward: sum (region "step (other)")
        loss.backward()
    # backward of sum: ones_like (engine seed, no node) + expand (view); of mul: mul;
    # x's AccumulateGrad: detach (a view)
    assert tracker.ops["a"] == 2  # mul forward, mul backward
    assert tracker.kernels["a"] == 2
    assert tracker.ops["step (other)"] == 3  # sum, the seed ones_like, expand (view)
    assert tracker.kernels["step (other)"] == 2
    assert tracker.ops["param grads (AccumulateGrad)"] == 1
    assert tracker.kernels["param grads (AccumulateGrad)"] == 0


def test_quick_run_writes_ratios_that_sum_by_region(tmp_path, capsys):
    oc = load_bench("op_count")
    out = tmp_path / "op_count.json"
    assert oc.main(["--quick", "--out", str(out), "--label", "x"]) == 0
    saved = json.loads(out.read_text())["x"]
    methods = saved["methods"]
    for m in methods.values():
        assert sum(m["ops_by_region"].values()) == m["ops"] > m["kernels"] > 0
    assert saved["wcl/simclr ops"] == methods["wcl"]["ops"] / methods["simclr"]["ops"] > 1
    assert methods["wcl"]["ops_by_region"]["weak labels"] > 0
    assert "| **total per step** |" in capsys.readouterr().out
