"""A run killed with SIGKILL in the middle of an epoch resumes from its last checkpoint and
ends where an uninterrupted run ends (issue 11, items 3 and 4)."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 4


def _cfg(root, out_dir, name, **overrides):
    cfg = yaml_pretrain_cfg("clinfonce_kmeans_synthetic_cub", "symmetric_32", root, out_dir,
                            max_epochs=EPOCHS)
    cfg.name = name
    cfg.method_kwargs.clusters.k = 4  # a dynamic provider: its state must survive the crash
    cfg.method_kwargs.clusters.period = 2
    cfg.log_every_n_steps = 1  # a row every step: the lost epoch's rows are in the log
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return OmegaConf.to_container(cfg, resolve=True)


def _run(args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__),
                                                        "_killable_run.py"), json.dumps(args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tiny_cub, tmp_path):
    out = str(tmp_path)
    # epochs of 3 steps; killed after 2 steps of epoch 2 (0-based), last.ckpt is after epoch 1
    killed = _run({"cfg": _cfg(tiny_cub, out, "crash"), "kill_epoch": 2, "kill_batch": 2})
    assert killed.returncode == -9, killed.stderr[-2000:]
    partial = tmp_path / "clinfonce" / "crash.partial"
    last = _state(partial / "last.ckpt")
    assert last["epoch"] == 1 and last["global_step"] == 6
    assert not (partial / "last.ckpt.tmp").exists()
    assert not (tmp_path / "clinfonce" / "crash").exists()
    rows_before = list(csv.DictReader(open(partial / "logs" / "metrics.csv")))
    assert {float(r["epoch"]) for r in rows_before if r["epoch"]} >= {0.0, 1.0, 2.0}
    # the learning-rate monitor's rows have a step but no epoch; step 6 is epoch 2's
    assert {int(r["step"]) for r in rows_before if not r["epoch"]} >= set(range(7))

    resumed = _run({"cfg": _cfg(tiny_cub, out, "crash", resume=True)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    # the kept log is set aside while Lightning's CSV writer starts: no warning that it
    # would delete it, and no file left aside
    assert "exists and is not empty" not in resumed.stderr
    assert not (tmp_path / "clinfonce" / "crash" / "logs.resume").exists()
    final = _state(tmp_path / "clinfonce" / "crash" / "crash.ckpt")
    assert final["global_step"] == 3 * EPOCHS

    straight = _run({"cfg": _cfg(tiny_cub, out, "straight")})
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = _state(tmp_path / "clinfonce" / "straight" / "straight.ckpt")
    assert (reference["epoch"], reference["global_step"]) == (final["epoch"], final["global_step"])
    # same seed, the generators restored from the checkpoint, no data-loader workers: the
    # resumed run replays exactly the batches and augmentations of the uninterrupted one
    for key, ref in reference["state_dict"].items():
        got = final["state_dict"][key]
        if ref.is_floating_point():
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(got, ref), key
    # the metrics log: epochs 0-1 (steps 0-5) of the first process kept, the lost epoch 2
    # (its epoch rows and its learning-rate rows) not duplicated
    rows = list(csv.DictReader(open(tmp_path / "clinfonce" / "crash" / "logs" / "metrics.csv")))
    ref_rows = list(csv.DictReader(open(tmp_path / "clinfonce" / "straight" / "logs" /
                                        "metrics.csv")))
    steps = lambda rs: sorted((r["epoch"], r["step"]) for r in rs)  # noqa: E731
    assert steps(rows) == steps(ref_rows)
    # the other files of the log directory (hparams.yaml under solo-learn) are kept too
    logs = lambda name: sorted(os.listdir(tmp_path / "clinfonce" / name / "logs"))  # noqa: E731
    assert logs("crash") == logs("straight")
