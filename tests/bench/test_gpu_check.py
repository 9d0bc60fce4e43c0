"""bench/gpu_check.py's parsing and report: the run's top-1 from main_linear.py's comparison
table, the ratios against their targets, and a FAIL row for a check that raises."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

import gpu_check  # noqa: E402

LINEAR_OUTPUT = """[clinfonce] linear (features protocol, features settings) top-1 56.44%  top-5 93.06%
same data (synthetic_cub_bench), same protocol; kNN: backbone, cosine, k=20
model                     method     linear top-1  kNN top-1
this run                  clinfonce         64.78      61.39
zoo:simclr-synthetic_cub  simclr            33.06      42.72
"""


def test_the_runs_top1_comes_from_its_row_of_the_comparison_table():
    assert gpu_check.linear_top1(LINEAR_OUTPUT) == {"linear_top1": 64.78, "knn_top1": 61.39}
    assert gpu_check.linear_top1("no table here") == {}


def test_error_line_prefers_the_error_line_over_the_last_line():
    assert gpu_check.error_line("a\nerror: the loss is nan at epoch 0, step 4\nbye\n") == \
        "error: the loss is nan at epoch 0, step 4"
    assert gpu_check.error_line("a\nlast words\n\n") == "last words"


def test_measures_are_the_step_ratios_per_size_and_the_device_to_cpu_images_per_second():
    steps = [{"size": 32, "clinfonce/simclr step": 1.01, "wcl/simclr step": 1.04},
             {"size": 224, "clinfonce/simclr step": 1.002, "wcl/simclr step": 1.03}]
    rows = [{"augment_on": "cpu", "images_per_s": 2000.0},
            {"augment_on": "device", "images_per_s": 5000.0}]
    m = gpu_check.measures_of(steps, rows)
    assert m == {"clinfonce/simclr step, 32 px": 1.01, "wcl/simclr step, 32 px": 1.04,
                 "clinfonce/simclr step, 224 px": 1.002, "wcl/simclr step, 224 px": 1.03,
                 "device/cpu augmentation images/s": pytest.approx(2.5)}
    assert gpu_check.measures_of(None, rows[:1]) == {}


def test_a_check_that_raises_is_a_fail_row_and_the_others_go_on():
    checks = {}
    assert gpu_check.guarded("breaks", checks, lambda: 1 / 0) is None
    assert gpu_check.guarded("works", checks, lambda: 7) == 7
    assert checks["breaks"]["ok"] is False and "ZeroDivisionError" in checks["breaks"]["error"]
    assert checks["works"]["ok"] is True


def test_the_table_shows_each_check_and_each_measure_against_its_target():
    result = {"environment": {"torch": "2.x", "cuda": "13.0", "gpu": "H200", "faiss": "1.15",
                              "faiss_gpus": 0, "lightning": "2.6", "cpu_cores": 16},
              "checks": {"wcl": {"ok": False, "seconds": 3.0, "error": "error: boom"}},
              "steps": None, "throughput": [],
              "measures": {"clinfonce/simclr step, 224 px": 1.004,
                           "clinfonce/simclr step, 32 px": 1.013}}
    text = gpu_check.table(result)
    assert "| wcl | FAIL | 3.0 | error: boom |" in text
    # one row per size, smaller first
    rows = [line for line in text.splitlines() if line.startswith("| clinfonce/simclr step")]
    assert rows == ["| clinfonce/simclr step, 32 px | 1.013 | <= 1.02 |",
                    "| clinfonce/simclr step, 224 px | 1.004 | <= 1.02 |"]
    assert "| wcl/simclr step | not measured | <= 1.05 |" in text


def fake_runs(monkeypatch, fail=()):
    """run_entry replaced by a stub that records the check name of each run it starts and
    fails the runs named in ``fail``."""
    import threading
    started, lock = [], threading.Lock()
    names = {tuple(args): name for chain in gpu_check.entry_runs("cpu", True)
             for name, _, args in chain}

    def run_entry(script, args, cwd, timeout):
        name = names[tuple(args)]
        with lock:
            started.append(name)
        output = "error: boom" if name in fail else (
            "this run  clinfonce  50.0  40.0\n" if script == "main_linear.py" else "done")
        return {"seconds": 0.01, "returncode": 1 if name in fail else 0, "output": output}

    monkeypatch.setattr(gpu_check, "run_entry", run_entry)
    return started


def test_entry_checks_keep_the_runs_order_and_stop_a_chain_at_its_first_failure(monkeypatch):
    started = fake_runs(monkeypatch, fail={"README main job: pretrain"})
    checks = gpu_check.entry_checks("cpu", "/nonexistent", True, 1.0)
    order = [name for chain in gpu_check.entry_runs("cpu", True) for name, _, _ in chain]
    # linear needs its pretraining: not run after it failed; every other chain ran
    assert list(checks) == [n for n in order if n != "README main job: linear"]
    assert "README main job: linear" not in started and len(started) == len(order) - 1
    assert checks["README main job: pretrain"] == {"ok": False, "seconds": 0.0,
                                                   "error": "error: boom"}
    assert checks["k-means refresh"]["faiss_on"] == "cpu"


def test_entry_checks_run_the_chains_at_once_and_one_at_a_time_with_one_job(monkeypatch):
    import threading
    import time
    active, peak, lock = [0], [0], threading.Lock()

    def run_entry(script, args, cwd, timeout):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        out = "this run  clinfonce  50.0  40.0\n" if script == "main_linear.py" else ""
        return {"seconds": 0.2, "returncode": 0, "output": out}

    monkeypatch.setattr(gpu_check, "run_entry", run_entry)
    chains = gpu_check.entry_runs("gpu", False)
    checks = gpu_check.entry_checks("gpu", "/nonexistent", False, 1.0)
    assert peak[0] == len(chains) == 5
    assert checks["README main job: linear"]["linear_top1"] == 50.0
    assert checks["k-means refresh"]["faiss_on"] == "gpu"
    peak[0] = 0
    checks = gpu_check.entry_checks("gpu", "/nonexistent", False, 1.0, jobs=1)
    assert peak[0] == 1 and all(c["ok"] for c in checks.values()) and len(checks) == 6
