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


class RunsAShellCommand:
    """Unpickling this object calls os.system (``posix.system``) with a harmless command that
    creates a file, so a run of it would show."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# torch's weights-only refusals, as worded by torch 2.14.1 (a module it blocks outright) and
# by torch 2.4 to 2.13 (a global not on its allow-list)
TORCH_2_14 = ("Weights only load failed. In PyTorch 2.6, we changed the default value of the "
              "`weights_only` argument in `torch.load` from `False` to `True`. Re-running "
              "`torch.load` with `weights_only` set to `False` will likely succeed, but it can "
              "result in arbitrary code execution. Do it only if you got the file from a "
              "trusted source.\n\n\nTrying to load unsupported GLOBAL posix.system whose module "
              "posix is blocked.\n\nCheck the documentation of torch.load to learn more")
TORCH_2_6 = ("Weights only load failed. This file can still be loaded, to do so you have two "
             "options, do those steps only if you trust the source of the checkpoint.\n\t(1) "
             "Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
             "but it can result in arbitrary code execution.\n\t(2) Alternatively, ...\n\t"
             "WeightsUnpickler error: Unsupported global: GLOBAL posix.system was not an "
             "allowed global by default. Please use `torch.serialization.add_safe_globals("
             "[system])`\n\nCheck the documentation of torch.load")


@pytest.mark.parametrize("text", [TORCH_2_14, TORCH_2_6], ids=["torch-2.14", "torch-2.6"])
def test_the_refused_global_is_read_from_either_wording(text):
    from clinfonce_plugin.run.checkpoints import refused_global

    assert refused_global(text) == "posix.system"


def _assert_no_unsafe_advice(message):
    for advice in ("weights_only=False", "weights_only set to False",
                   "`weights_only` set to `False`", "weights_only=0"):
        assert advice not in message


def test_a_pickle_calling_os_system_is_refused_by_name_and_not_loaded(tmp_path):
    marker = tmp_path / "written_by_the_shell"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "extra": RunsAShellCommand(str(marker))}, path)
    with pytest.raises(CheckpointError) as err:
        safe_load(str(path), "pretrained checkpoint")
    message = str(err.value)
    assert message.startswith(f"pretrained checkpoint {path} was refused: it needs arbitrary "
                              f"unpickling (it refers to posix.system), which could run code; "
                              f"the file was not loaded.")
    _assert_no_unsafe_advice(message)
    assert not marker.exists()


def test_a_refusal_without_a_named_global_gives_no_unsafe_advice(tmp_path, monkeypatch):
    import pickle

    from clinfonce_plugin.run import checkpoints

    def refuse(*args, **kwargs):  # torch's wording with a reason that names no global
        raise pickle.UnpicklingError(TORCH_2_14.replace(
            "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.",
            "Unsupported operand 149"))

    path = tmp_path / "x.ckpt"
    path.write_bytes(b"\x80\x02")
    monkeypatch.setattr(checkpoints.torch, "load", refuse)
    with pytest.raises(CheckpointError, match=r"not a readable torch checkpoint \(2 bytes; not "
                                              r"a torch file\?\): Unsupported operand 149$") as err:
        safe_load(str(path))
    _assert_no_unsafe_advice(str(err.value))
