"""Checkpoints from outside the run are loaded weights-only: a crafted pickle runs nothing,
and unreadable or diverged checkpoints are refused with a reason (issue 11, items 1, 6, 9)."""
import json
import os
import random
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.errors import CheckpointError
from clinfonce_plugin.host.backbone import make_backbone
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.evaluate.pretrained import load_pretrained_backbone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRETRAIN_ARGS = {"name": "p", "method": "simclr", "backbone": {"name": "test_resnet"},
                 "data": {"dataset": "synthetic_cub", "train_path": "unused"},
                 "augmentations": [{"crop_size": 32, "num_crops": 2}]}


class WritesAFile:
    """Unpickling this object calls open(path, "w"): it creates the file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _checkpoint(folder, extra=None, nan=False):
    """A real backbone checkpoint with args.json beside it; ``extra`` is pickled along."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "args.json"), "w") as f:
        json.dump(PRETRAIN_ARGS, f)
    backbone, _ = make_backbone(OmegaConf.create(PRETRAIN_ARGS))
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    if nan:
        key = next(k for k, v in state.items() if v.is_floating_point())
        state[key] = state[key].clone().fill_(float("nan"))
    payload = {"state_dict": state, "epoch": 1}
    if extra is not None:
        payload["extra"] = extra
    path = os.path.join(folder, "p.ckpt")
    torch.save(payload, path)
    return path


def test_the_plain_checkpoint_loads(tmp_path):
    backbone, dim, pre_cfg = load_pretrained_backbone(_checkpoint(str(tmp_path)))
    assert dim == 96 and pre_cfg.method == "simclr"


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "written_by_the_pickle"
    ckpt = _checkpoint(str(tmp_path / "run"), extra=WritesAFile(str(marker)))
    lin = OmegaConf.create({"pretrained": ckpt, "enable_progress_bar": False})
    with pytest.raises(CheckpointError, match=r"refused: it needs arbitrary unpickling \(it "
                                              r"refers to .*open\), which could run code"):
        linear_eval(lin)
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path / "run")) == ["args.json", "p.ckpt"]  # nothing written


def test_main_linear_refuses_a_crafted_pickle_with_one_error_line(tmp_path):
    marker = tmp_path / "written_by_the_pickle"
    ckpt = _checkpoint(str(tmp_path / "run"), extra=WritesAFile(str(marker)))
    proc = subprocess.run([sys.executable, "main_linear.py", "--config-name",
                           "clinfonce_synthetic_cub.yaml", f"pretrained={ckpt}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: pretrained checkpoint {ckpt} was refused: it needs arbitrary unpickling")
    assert "Traceback" not in proc.stderr and not marker.exists()


@pytest.mark.parametrize("content,match", [
    (b"", r"is empty \(0 bytes\)"),
    (random.Random(0).randbytes(4096), r"not a readable torch checkpoint \(4096 bytes"),
    (None, r"not a readable torch checkpoint \(\d+ bytes; truncated"),
])
def test_unreadable_checkpoints_are_named_errors(tmp_path, content, match):
    path = tmp_path / "x.ckpt"
    if content is None:  # the first half of a real checkpoint
        whole = open(_checkpoint(str(tmp_path / "real")), "rb").read()
        content = whole[: len(whole) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        safe_load(str(path))


def test_arbitrary_bytes_are_named_errors_not_tracebacks(tmp_path):
    # garbage reaches the unpickler's internals, which raise IndexError, KeyError,
    # struct.error, ... (a CI run met one with os.urandom); a pickle-protocol prefix makes
    # the unpickler read further into the bytes
    path = tmp_path / "x.ckpt"
    for i in range(300):
        rng = random.Random(i)
        content = rng.randbytes(rng.choice([1, 2, 8, 64, 512]))
        if i % 2:
            content = b"\x80" + bytes([rng.randint(0, 5)]) + content
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=r"not a readable torch checkpoint \("
                                                  rf"{len(content)} bytes"):
            safe_load(str(path))


def test_non_finite_weights_are_refused_before_evaluation(tmp_path):
    ckpt = _checkpoint(str(tmp_path), nan=True)
    with pytest.raises(CheckpointError, match=r"non-finite \(NaN or inf\) weights in 1 tensor"):
        load_pretrained_backbone(ckpt)


def test_a_crafted_resume_checkpoint_is_refused_before_training(tmp_path, tiny_cub):
    from clinfonce_plugin.run.pretrain import pretrain
    from tests.helpers import yaml_pretrain_cfg

    marker = tmp_path / "written_by_the_pickle"
    ckpt = _checkpoint(str(tmp_path / "evil"), extra=WritesAFile(str(marker)))
    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", tiny_cub,
                            str(tmp_path / "runs"))
    cfg.resume_from_checkpoint = ckpt
    with pytest.raises(CheckpointError, match="resume_from_checkpoint .* was refused"):
        pretrain(cfg)
    assert not marker.exists() and not (tmp_path / "runs").exists()
