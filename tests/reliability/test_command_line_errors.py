"""Command-line and run-directory mistakes are one ``error:`` line with exit code 2, before
the run directory exists (issue 25, item 7)."""
import os
import shutil
import subprocess
import sys

import lightning.pytorch as pl
import pytest

from clinfonce_plugin.config.command_line import check_command_line, rewrite_overrides
from clinfonce_plugin.config import ConfigError, Sources
from clinfonce_plugin.errors import RunDirError
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRETRAIN_CONFIGS = os.path.join(REPO, "scripts", "pretrain")
CONFIG = "simclr_synthetic_cub.yaml"


def _pretrain(tmp_path, *args):
    """``main_pretrain.py`` run from ``tmp_path`` (hydra writes nothing into the repository):
    (exit code, stderr lines)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "main_pretrain.py"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr.strip().splitlines()


def _only_error_line(lines):
    """The stderr of a refused command: one ``error:`` line, the last, and no traceback
    (solo-learn's import warnings may come before it)."""
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert not any("Traceback" in line for line in lines), lines
    return errors[0]


def _check(*argv):
    check_command_line(list(argv), rewrite_overrides(list(argv), PRETRAIN_CONFIGS),
                       PRETRAIN_CONFIGS)


@pytest.mark.parametrize("argv,expected", [
    (["--config-name", CONFIG, "name=a\n"],
     r"command line \('name=a\\n'\): the override holds the control character '\\n' "
     r"\(a newline pasted into the command\?\)"),
    (["--config-name", CONFIG, "data.train_path=[x"],
     r"command line \(data.train_path=\[x\): not a valid override: no viable "
     r"alternative at input '\[x'"),
    (["optimizer.lr=[0.3"], r"command line \(optimizer.lr=\[0.3\): not a valid override"),
    (["--config-name"], r"command line: argument --config-name/-cn: expected one argument$"),
    (["--bogus", CONFIG], r"command line: unrecognized arguments: --bogus"),
    (["--config-name", "simclr_synthetic_cb.yaml"],
     rf"command line \(--config-name simclr_synthetic_cb.yaml\): no config "
     rf"simclr_synthetic_cb.yaml in {PRETRAIN_CONFIGS}/ \(did you mean "
     rf"simclr_synthetic_cub.yaml"),
    (["--config-name", CONFIG, "augmentations=symetric_32"],
     rf"command line \(augmentations=symetric_32\): no config symetric_32.yaml in "
     rf"{PRETRAIN_CONFIGS}/augmentations/ \(did you mean symmetric_32.yaml"),
    (["augmentations=symmetric_32"], r"command line \(augmentations=symmetric_32\): a "
                                     r"config-group choice needs a --config-name"),
])
def test_command_lines_hydra_cannot_read_are_named(argv, expected):
    with pytest.raises(ConfigError, match=rf"^{expected}"):
        _check(*argv)


def test_valid_command_lines_pass_the_check():
    _check("--config-name", CONFIG, "augmentations=symmetric_32", "optimizer.lr=0.3",
           "data.train_path=/a b", "+method_kwargs.x=1", "hydra.run.dir=.", "name='x y'")


@pytest.mark.parametrize("args,expected", [
    (["--config-name", CONFIG, "name=a\n"],
     "error: command line ('name=a\\n'): the override holds the control character '\\n' "
     "(a newline pasted into the command?); expected key=value on one line"),
    (["method=simclr"],
     "error: command line (no --config-name given): backbone.name: required key is missing"),
    (["--config-name", CONFIG, "max_epochs=0", "max_epochs=-3"],
     "error: command line (max_epochs=-3): max_epochs: expected a value >= 1, got -3"),
])
def test_entry_point_errors_are_one_line_and_exit_2(tmp_path, args, expected):
    code, lines = _pretrain(tmp_path, *args)
    assert code == 2, lines
    assert _only_error_line(lines) == expected
    assert os.listdir(tmp_path) == []  # no outputs/, no run directory


@pytest.mark.parametrize("key,value,expected", [
    ("batch_size", 1, r"optimizer.batch_size: expected a value >= 2, got 1"),
    ("name", "sgdd", r"optimizer.name: unknown optimizer 'sgdd'. Choose from the [\w-]+ host's "
                     r"\['sgd', 'lars', 'adam', 'adamw'\]"),
])
def test_values_that_failed_inside_training_are_refused_before_the_run_directory(
        tmp_path, tiny_cub, key, value, expected):
    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", tiny_cub,
                            str(tmp_path / "runs"))
    cfg.optimizer[key] = value
    with pytest.raises(ConfigError, match=expected):
        pretrain(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_dir_that_is_a_file_is_one_error_line(tmp_path, tiny_cub):
    (tmp_path / "runs").write_text("my notes")
    code, lines = _pretrain(tmp_path, "--config-name", CONFIG, f"data.train_path={tiny_cub}",
                            f"checkpoint.dir={tmp_path}/runs", "data.num_workers=0",
                            "optimizer.batch_size=12")
    assert code == 2, lines
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [f"error: checkpoint.dir: cannot write the run's files under "
                      f"{tmp_path}/runs/simclr: Not a directory ({tmp_path}/runs/simclr); "
                      f"give a writable directory"]
    assert "Traceback" not in "\n".join(lines)
    assert (tmp_path / "runs").read_text() == "my notes"


def test_the_override_given_last_is_the_one_reported():
    sources = Sources(primary=os.path.join(PRETRAIN_CONFIGS, CONFIG),
                      overrides=["max_epochs=3", "max_epochs=0"])
    assert sources.where("max_epochs") == "command line (max_epochs=0)"


def test_an_unknown_section_from_the_command_line_is_said_to_come_from_it():
    sources = Sources(primary=os.path.join(PRETRAIN_CONFIGS, CONFIG),
                      overrides=["max_epochs=3", "foo.bar=1"])
    assert sources.where("foo") == "command line (foo.bar=1)"
    # a section the yaml has keeps the yaml's line
    assert sources.where("optimizer").startswith(f"{PRETRAIN_CONFIGS}/{CONFIG}:")


class SpoilTheRunDirectory(pl.Callback):
    """At the start of epoch 1 (after epoch 0's last.ckpt), removes the run directory,
    replaces it with a file, or puts a directory where its metrics log is written."""

    def __init__(self, path, how):
        self.path, self.how = path, how

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch != 1:
            return
        if self.how == "log":
            log = os.path.join(self.path, "logs", "metrics.csv")
            os.remove(log)
            os.mkdir(log)
            return
        shutil.rmtree(self.path)
        if self.how == "file":
            with open(self.path, "w") as f:
                f.write("not a directory")


@pytest.mark.slow
@pytest.mark.parametrize("how,cause", [
    ("removed", "it no longer exists (removed or moved while the run was training); no "
                "checkpoint of the run is left"),
    ("file", "it is no longer a directory (replaced while the run was training); no "
             "checkpoint of the run is left"),
    ("log", "Is a directory; writing {partial}/logs/metrics.csv failed (Is a directory); its "
            "last checkpoint {partial}/last.ckpt is kept: continue with resume=true once the "
            "directory is writable"),
])
def test_a_run_directory_lost_mid_run_is_named_with_the_cause(tiny_cub, tmp_path, how, cause):
    from clinfonce_plugin.cli import one_line

    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", tiny_cub, str(tmp_path))
    partial = tmp_path / "simclr" / "simclr-synthetic_cub.partial"
    with pytest.raises(RunDirError) as err:
        pretrain(cfg, callbacks=[SpoilTheRunDirectory(str(partial), how)])
    assert one_line(err.value) == (f"the run directory {partial} became unusable at epoch 1, "
                                   f"step 6: {cause.format(partial=partial)}")
    # no directory was made again in its place, and the lock is released
    assert sorted(os.listdir(tmp_path / "simclr")) == (
        [] if how == "removed" else ["simclr-synthetic_cub.partial"])
