"""rundir.py: run names, the lock, and a run directory lifecycle that never deletes anything
(issue 11, items 2 and 5)."""
import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.config import ConfigError, check_pretrain_cfg, validate_run_name
from clinfonce_plugin.errors import RunDirError
from clinfonce_plugin.run.rundir import MARKER, RunDir


@pytest.mark.parametrize("name", ["/some/dir", "..", ".", "a/b", "", "-x", "x y", "a\\b",
                                  "é", "x" * 129])
def test_unsafe_run_names_are_refused(name):
    with pytest.raises(ConfigError, match="is not a valid run name"):
        validate_run_name(name)


@pytest.mark.parametrize("name", ["run", "simclr-cub_v2.1", "A9", "x" * 128])
def test_safe_run_names_pass(name):
    assert validate_run_name(name) == name


def test_config_check_refuses_a_path_as_name_with_its_line(tmp_path):
    from clinfonce_plugin import host

    path = tmp_path / "cfg.yaml"
    path.write_text("name: ../..\nmethod: clinfonce\nbackbone:\n  name: test_resnet\ndata:\n"
                    "  dataset: synthetic_cub\n  train_path: x\noptimizer:\n  name: sgd\n"
                    "  batch_size: 4\n  lr: 0.1\naugmentations:\n  - crop_size: 32\n"
                    "    num_crops: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:1: name: '../..' is not a valid run name"):
        check_pretrain_cfg(OmegaConf.load(path), {"synthetic_cub"}, host.METHODS, str(path))


def _own(path, content="x"):
    """A directory this project made (with the marker), holding one file."""
    os.makedirs(path)
    with open(os.path.join(path, MARKER), "w") as f:
        json.dump({}, f)
    with open(os.path.join(path, "file"), "w") as f:
        f.write(content)


def test_a_directory_without_the_marker_is_never_touched(tmp_path):
    run = RunDir(str(tmp_path), "clinfonce", "mine")
    os.makedirs(run.final)
    (tmp_path / "clinfonce" / "mine" / "thesis.tex").write_text("precious")
    for kwargs in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunDirError, match="was not made by clinfonce-plugin"):
            run.start(**kwargs)
    assert (tmp_path / "clinfonce" / "mine" / "thesis.tex").read_text() == "precious"
    assert sorted(os.listdir(tmp_path / "clinfonce")) == ["mine"]


def test_a_finished_run_is_replaced_only_with_overwrite_and_kept_aside(tmp_path):
    run = RunDir(str(tmp_path), "m", "r")
    _own(run.final, "old")
    with pytest.raises(RunDirError, match="a finished run exists .* overwrite=true"):
        run.start()
    assert run.start(overwrite=True) is None and os.path.isfile(os.path.join(run.partial, MARKER))
    run.finish()
    backups = [d for d in os.listdir(tmp_path / "m") if d.startswith("r.replaced-")]
    assert len(backups) == 1
    assert (tmp_path / "m" / backups[0] / "file").read_text() == "old"
    assert not os.path.exists(os.path.join(run.final, "file"))  # the new run is in place


def test_an_interrupted_run_is_resumed_or_set_aside_never_deleted(tmp_path):
    run = RunDir(str(tmp_path), "m", "r")
    _own(run.partial)
    with pytest.raises(RunDirError, match="nothing to resume .* before its first checkpoint"):
        run.start(resume=True)
    with open(run.last_checkpoint, "w") as f:
        f.write("ckpt")
    with pytest.raises(RunDirError, match="an interrupted run exists .* resume=true"):
        run.start()
    assert run.start(resume=True) == run.last_checkpoint
    assert run.start(auto_resume=True, max_hours=1) == run.last_checkpoint
    explicit = str(tmp_path / "elsewhere.ckpt")
    assert run.start(resume_from=explicit) == explicit and os.path.isfile(run.last_checkpoint)
    assert run.start(overwrite=True) is None
    aside = [d for d in os.listdir(tmp_path / "m") if d.startswith("r.partial.replaced-")]
    assert len(aside) == 1 and (tmp_path / "m" / aside[0] / "last.ckpt").read_text() == "ckpt"


def test_resume_without_an_interrupted_run_says_why(tmp_path):
    run = RunDir(str(tmp_path), "m", "r")
    with pytest.raises(RunDirError, match="nothing to resume: no interrupted run"):
        run.start(resume=True)
    assert run.start(auto_resume=True) is None  # solo-learn's auto_resume: start afresh
    run.finish()
    with pytest.raises(RunDirError, match="nothing to resume: the run finished"):
        run.start(resume=True)


def test_a_second_run_of_the_same_name_is_refused_while_the_first_holds_the_lock(tmp_path):
    first, second = RunDir(str(tmp_path), "m", "r"), RunDir(str(tmp_path), "m", "r")
    first.acquire()
    with pytest.raises(RunDirError, match=rf"in use by process {os.getpid()} on "):
        second.acquire()
    with pytest.raises(RunDirError, match="in use"):  # a live process's lock is not broken
        second.acquire(break_lock=True)
    first.release()
    second.acquire()
    second.release()
    assert not os.path.exists(first.lock)


def test_a_stale_lock_is_reported_and_broken_only_when_asked(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    run = RunDir(str(tmp_path), "m", "r")
    os.makedirs(os.path.dirname(run.lock))
    import socket
    with open(run.lock, "w") as f:
        json.dump({"pid": pid, "host": socket.gethostname(), "started": "then"}, f)
    with pytest.raises(RunDirError, match=rf"stale lock .* process {pid} .* break_lock=true"):
        run.acquire()
    run.acquire(break_lock=True)
    assert json.load(open(run.lock))["pid"] == os.getpid()
    run.release()


@pytest.mark.parametrize("content", ["", "{\"pid\": 12", "not json", "[]"])
def test_an_unreadable_lock_is_named_and_broken_only_when_asked(tmp_path, content):
    # a kill between creating the lock and writing its record (the lock of an older
    # version, written in two steps) leaves an empty or cut lock
    run = RunDir(str(tmp_path), "m", "r")
    os.makedirs(os.path.dirname(run.lock))
    with open(run.lock, "w") as f:
        f.write(content)
    with pytest.raises(RunDirError, match=r"has an unreadable lock .* \(empty or not a lock "
                                          r"record.*rerun with break_lock=true") as err:
        run.acquire()
    assert "None" not in str(err.value)
    assert open(run.lock).read() == content  # left as it was
    run.acquire(break_lock=True)
    assert json.load(open(run.lock))["pid"] == os.getpid()
    run.release()
    assert sorted(os.listdir(tmp_path / "m")) == []  # no temporary file left


def test_the_lock_is_never_seen_without_its_record(tmp_path, monkeypatch):
    # the record is complete before the lock's name exists: watch every creation of a path
    # and read the lock the moment its name appears
    run = RunDir(str(tmp_path), "m", "r")
    seen = []
    real_link, real_open = os.link, os.open

    def link(src, dst, *args, **kwargs):
        real_link(src, dst, *args, **kwargs)
        if dst == run.lock:
            seen.append(open(dst).read())

    def os_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if path == run.lock:
            seen.append(open(path).read())
        return fd

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "open", os_open)
    run.acquire()
    assert len(seen) == 1 and json.loads(seen[0])["pid"] == os.getpid()
    run.release()


@pytest.mark.parametrize("kind", ["file", "file-inside"])
def test_a_checkpoint_dir_that_is_a_file_is_named(tmp_path, kind):
    path = tmp_path / "not_a_dir"
    path.write_text("mine")
    root = str(path) if kind == "file" else str(path / "below")
    with pytest.raises(RunDirError, match=rf"^checkpoint.dir: cannot write the run's files "
                                          rf"under {root}/m: Not a directory"):
        RunDir(root, "m", "r").acquire()
    assert path.read_text() == "mine"


def test_a_checkpoint_dir_that_cannot_be_written_is_named():
    # as root chmod does not stop writes; sysfs refuses a new directory to root too
    root = "/sys/clinfonce-test-runs"
    with pytest.raises(RunDirError, match=rf"^checkpoint.dir: cannot write the run's files "
                                          rf"under {root}/m: (Operation not permitted|"
                                          rf"Permission denied|Read-only file system) "):
        RunDir(root, "m", "r").acquire()
    assert not os.path.exists(root)
