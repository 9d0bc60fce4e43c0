"""The loggers of a pretrain run (issue 14, item 9): wandb offline and TensorBoard beside the
CSV log, inside the run directory; the learning-rate monitor's values in metrics.csv; a
logger whose package is missing stops the run before training; and a run prints none of the
Lightning warnings filtered as noise."""
import csv
import glob
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.errors import MissingPackage
from clinfonce_plugin.run.lightning_noise import NOISE, lightning_noise_filtered
from clinfonce_plugin.run.loggers import WANDB_ID_FILE, check_logger_packages
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH, IMAGES = 12, 36  # tiny_cub: 6 classes x 12 images -> 3 steps an epoch


def _cfg(root, out_dir, max_epochs=2):
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", root, out_dir,
                            max_epochs=max_epochs)
    cfg.method_kwargs.clusters = {"provider": "attributes", "k": 4}
    return cfg


@pytest.fixture(scope="module")
def logged_run(tiny_cub, tmp_path_factory):
    """Two epochs with wandb (offline) and TensorBoard on, a row every step, the lr schedule
    stepped per epoch; run from an empty working directory."""
    out = tmp_path_factory.mktemp("loggers")
    cwd = tmp_path_factory.mktemp("cwd")
    cfg = _cfg(tiny_cub, str(out))
    cfg.wandb = {"enabled": True, "offline": True, "project": "clinfonce-tests"}
    cfg.tensorboard = {"enabled": True}
    cfg.log_every_n_steps = 1
    cfg.scheduler.interval, cfg.scheduler.warmup_epochs = "epoch", 1
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as mp:
        # wandb's own cache, config and data folders (not the run's files) stay in the test's
        for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            mp.setenv(var, str(home))
        mp.chdir(cwd)
        records = _Records()
        lightning_log = logging.getLogger("lightning.pytorch")
        lightning_log.addHandler(records)
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                ckpt = pretrain(cfg)
        finally:
            lightning_log.removeHandler(records)
    return {"run": os.path.dirname(ckpt), "cwd": str(cwd), "out": str(out),
            "warnings": [str(w.message) for w in seen], "log": records.messages}


class _Records(logging.Handler):
    """The messages Lightning logs (its console output besides warnings)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_checkpoint_saves_log_nothing(logged_run):
    # Lightning >= 2.5 logs "`weights_only` was not set" at every save that leaves it unset:
    # a line per epoch in the user's console
    assert any("Trainable params" in m for m in logged_run["log"])  # the handler sees it
    assert not [m for m in logged_run["log"] if "weights_only" in m]


@pytest.mark.slow
def test_wandb_offline_writes_its_run_inside_the_run_directory(logged_run):
    run = logged_run["run"]
    offline = glob.glob(os.path.join(run, "wandb", "offline-run-*"))
    assert len(offline) == 1
    with open(os.path.join(run, WANDB_ID_FILE)) as f:
        run_id = f.read().strip()
    assert offline[0].endswith("-" + run_id)  # the id a resumed run continues
    with open(os.path.join(offline[0], f"run-{run_id}.wandb"), "rb") as f:
        records = f.read()
    # the run's history holds the loss and the learning rate under their metric names
    assert b"train_clinfonce_loss_epoch" in records and b"lr-SGD/backbone" in records
    # nothing in the working directory, nothing left at the .partial path after the rename
    assert os.listdir(logged_run["cwd"]) == []
    assert not glob.glob(os.path.join(logged_run["out"], "clinfonce", "*.partial"))


@pytest.mark.slow
def test_tensorboard_events_hold_the_csv_values(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = glob.glob(os.path.join(logged_run["run"], "tensorboard", "events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(events[0])
    acc.Reload()
    tb = {e.step: e.value for e in acc.Scalars("train_clinfonce_loss_epoch")}
    rows = list(csv.DictReader(open(os.path.join(logged_run["run"], "logs", "metrics.csv"))))
    logged = {int(r["step"]): float(r["train_clinfonce_loss_epoch"]) for r in rows
              if r["train_clinfonce_loss_epoch"]}
    assert sorted(logged) == [2, 5]  # the last step of each epoch
    assert tb == pytest.approx(logged, rel=1e-6)


@pytest.mark.slow
def test_the_csv_log_directory_holds_only_the_csv_log(logged_run):
    # Lightning's CSV writer warns about what it finds in its directory (under solo-learn
    # it writes hparams.yaml there itself)
    assert "metrics.csv" in os.listdir(os.path.join(logged_run["run"], "logs"))
    assert set(os.listdir(os.path.join(logged_run["run"], "logs"))) <= {"metrics.csv",
                                                                       "hparams.yaml"}
    assert not [m for m in logged_run["warnings"] if "exists and is not empty" in m]


@pytest.mark.slow
def test_the_learning_rate_is_logged_with_the_schedules_value(logged_run):
    rows = list(csv.DictReader(open(os.path.join(logged_run["run"], "logs", "metrics.csv"))))
    lr = {int(r["step"]): float(r["lr-SGD/backbone"]) for r in rows if r["lr-SGD/backbone"]}
    assert sorted(lr) == list(range(6))  # every step of the two epochs
    # warmup_cosine stepped per epoch with warmup_epochs=1 of max_epochs=2: epoch 0 at
    # warmup_start_lr, epoch 1 at the base lr, scaled by batch / 256 (0.4 in the yaml)
    base = 0.4 * BATCH / 256
    assert [lr[s] for s in range(3)] == pytest.approx([3e-5] * 3, rel=1e-9)
    assert [lr[s] for s in range(3, 6)] == pytest.approx([base] * 3, rel=1e-9)


@pytest.mark.parametrize("key,package", [("wandb", "wandb"), ("tensorboard", "tensorboard")])
def test_a_missing_logger_package_is_named(monkeypatch, key, package):
    monkeypatch.setitem(sys.modules, package, None)  # import raises ImportError
    cfg = OmegaConf.create({"wandb": {"enabled": key == "wandb"},
                            "tensorboard": {"enabled": key == "tensorboard"}})
    with pytest.raises(MissingPackage, match=rf"^{key}.enabled=true needs the package "
                                             rf"'{package}', which is not installed: "
                                             rf"pip install {package} "):
        check_logger_packages(cfg)


@pytest.mark.slow
def test_main_pretrain_without_wandb_exits_2_before_training(tiny_cub, tmp_path):
    # main_pretrain.py in a process where `import wandb` fails
    code = ("import runpy, sys; sys.modules['wandb'] = None; "
            "sys.argv = ['main_pretrain.py'] + sys.argv[1:]; "
            "runpy.run_path('main_pretrain.py', run_name='__main__')")
    proc = subprocess.run(
        [sys.executable, "-c", code, "--config-name", "clinfonce_synthetic_cub.yaml",
         f"data.train_path={tiny_cub}", f"checkpoint.dir={tmp_path}", "wandb.enabled=true",
         "data.num_workers=0"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: wandb.enabled=true needs the package 'wandb', which is not "
                      "installed: pip install wandb (or pip install -e \".[loggers]\" in this "
                      "repository)"]
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []  # no run directory: nothing started


# the messages as Lightning 2.6 and torch 2.14 print them in the README's main job
LIGHTNING_MESSAGES = [
    (UserWarning, "You defined a `validation_step` but have no `val_dataloader`. Skipping "
                  "val loop."),
    (UserWarning, "The number of training batches (7) is smaller than the logging interval "
                  "Trainer(log_every_n_steps=10). Set a lower value for log_every_n_steps if "
                  "you want to see logs for the training epoch."),
    (FutureWarning, "`isinstance(treespec, LeafSpec)` is deprecated, use "
                    "`isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead."),
]


def test_the_noise_filter_hides_exactly_the_listed_messages():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with lightning_noise_filtered():
            for category, message in LIGHTNING_MESSAGES:
                warnings.warn(message, category)
            # the same words in another message, and another warning, still show
            warnings.warn("The 'train_dataloader' does not have many workers", UserWarning)
            warnings.warn(LIGHTNING_MESSAGES[0][1] + " And more.", UserWarning)
            warnings.warn(LIGHTNING_MESSAGES[2][1], UserWarning)  # other category
    assert [str(w.message) for w in seen] == [
        "The 'train_dataloader' does not have many workers",
        LIGHTNING_MESSAGES[0][1] + " And more.", LIGHTNING_MESSAGES[2][1]]
    assert len(NOISE) == len(LIGHTNING_MESSAGES)


@pytest.mark.slow
def test_a_pretrain_prints_none_of_the_filtered_warnings(tiny_cub, tmp_path):
    # no val_path and 3 batches below log_every_n_steps=10: Lightning raises the first two
    cfg = _cfg(tiny_cub, str(tmp_path), max_epochs=1)
    assert cfg.get("log_every_n_steps", 10) > IMAGES // BATCH
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pretrain(cfg)
    shown = [str(w.message) for w in seen]
    noise = [m for m in shown if any(re.match(n.message, m, re.I) for n in NOISE)]
    assert noise == []
