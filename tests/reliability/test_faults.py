"""Faults during a run: a diverging loss, corrupt images, a batch larger than the data,
Ctrl-C (issue 11, items 6, 8, 9)."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from clinfonce_plugin.data.images import verify_images
from clinfonce_plugin.errors import ConfigError, DataError, TrainingDiverged
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(root, out_dir, **overrides):
    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", root, out_dir)
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_naming_the_step(tiny_cub, tmp_path):
    cfg = _cfg(tiny_cub, str(tmp_path))
    cfg.optimizer.lr = 1e9
    cfg.scheduler.warmup_epochs = 0
    with pytest.raises(TrainingDiverged, match=r"the loss is (nan|inf) at epoch \d+, step "
                                               r"(\d+) \(last finite loss [-\d.e+]+ at step"):
        pretrain(cfg)
    run = tmp_path / "simclr"
    assert not (run / "simclr-synthetic_cub").exists()  # no final (NaN) checkpoint
    assert not (run / "simclr-synthetic_cub.partial" / "simclr-synthetic_cub.ckpt").exists()


def _corrupt_copy(tiny_cub, tmp_path):
    """A copy of the tiny CUB with a zero-byte, a garbage and a truncated JPEG."""
    root = tmp_path / "cub"
    shutil.copytree(tiny_cub, root)
    files = sorted((root / "images").rglob("*.jpg"))
    files[0].write_bytes(b"")
    files[1].write_bytes(os.urandom(2000))
    whole = files[2].read_bytes()
    files[2].write_bytes(whole[: len(whole) // 2])
    return root, files[:3]


def test_verify_images_lists_every_bad_file_at_once(tiny_cub, tmp_path):
    root, bad = _corrupt_copy(tiny_cub, tmp_path)
    with pytest.raises(DataError, match=r"^3 of \d+ image file\(s\) of x are unusable: ") as err:
        verify_images(sorted((root / "images").rglob("*.jpg")), "x")
    text = str(err.value)
    assert f"{bad[0]} is empty (0 bytes)" in text
    assert f"{bad[1]} is not a readable image" in text
    assert f"{bad[2]} is a truncated JPEG (no end-of-image marker)" in text


def test_pretrain_refuses_corrupt_images_before_training(tiny_cub, tmp_path):
    root, bad = _corrupt_copy(tiny_cub, tmp_path)
    cfg = _cfg(str(root), str(tmp_path / "runs"))
    # a split holds some of the three; the check runs on the split that is read
    with pytest.raises(DataError, match="image file\\(s\\) of synthetic_cub (train|test) split"):
        cfg.data.val_path = str(root)
        pretrain(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_without_the_check_a_corrupt_image_error_names_the_file(tiny_cub, tmp_path):
    root, bad = _corrupt_copy(tiny_cub, tmp_path)
    cfg = _cfg(str(root), str(tmp_path / "runs"))
    cfg.data.verify_images = False
    cfg.data.val_path = str(root)  # every image is read in the first epoch
    with pytest.raises(DataError, match=r"image .*\.jpg cannot be decoded: ") as err:
        pretrain(cfg)
    assert any(str(f) in str(err.value) for f in bad)


def test_a_batch_larger_than_the_data_is_a_config_error(tiny_cub, tmp_path):
    cfg = _cfg(tiny_cub, str(tmp_path))
    cfg.optimizer.batch_size = 1000
    with pytest.raises(ConfigError, match="optimizer.batch_size=1000 is larger than the 36"):
        pretrain(cfg)


@pytest.mark.slow
def test_ctrl_c_says_where_the_last_checkpoint_is(tiny_cub, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "main_pretrain.py", "--config-name", "simclr_synthetic_cub.yaml",
         f"data.train_path={tiny_cub}", "data.num_workers=0", "optimizer.batch_size=12",
         f"checkpoint.dir={tmp_path}", "max_epochs=500", "enable_progress_bar=false",
         "name=ctrlc"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a suite started in the background (nohup, &) inherits an ignored SIGINT, and Python
        # then installs no KeyboardInterrupt handler: the child gets the default disposition
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = tmp_path / "simclr" / "ctrlc.partial" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert last.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("error: interrupted at epoch ")
    assert f"its last checkpoint is {last}; continue with resume=true" in err
    assert not (tmp_path / "simclr" / "ctrlc.lock").exists()
