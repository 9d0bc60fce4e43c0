"""A checkpoint written under one host loads under the other (issue 14, item 4): the
checkpoint records its backbone's origin and key layout, the loader maps the layouts
(timm models bare on the runtime, wrapped under solo-learn), and solo-learn's own
main_linear recipe loads our ResNet checkpoints. The cross-host tests need solo-learn and
skip cleanly without it."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from clinfonce_plugin import host
from clinfonce_plugin.checkpoints import backbone_weights, fit_keys, safe_load

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_SOLO = importlib.util.find_spec("solo") is not None
needs_solo = pytest.mark.skipif(not HAVE_SOLO, reason="solo-learn is not installed")


def test_fit_keys_adds_or_strips_the_wrapper_prefix_only_when_everything_then_fits():
    w = {"conv1.weight": torch.zeros(1), "fc.bias": torch.ones(1)}
    assert fit_keys(w, ["conv1.weight", "fc.bias"]) is w
    wrapped = fit_keys(w, ["model.conv1.weight", "model.fc.bias"])
    assert sorted(wrapped) == ["model.conv1.weight", "model.fc.bias"]
    assert fit_keys(wrapped, ["conv1.weight", "fc.bias"]).keys() == w.keys()
    # no layout makes them fit: unchanged, for the caller to report
    assert fit_keys(w, ["model.conv1.weight"]) is w
    assert fit_keys(w, ["layer1.weight", "fc.bias"]) is w


def _run(env_host, *args):
    env = dict(os.environ, CLINFONCE_HOST=env_host, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests/host/_portable_run.py"),
                           *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _other(name):
    return "runtime" if name == "solo-learn" else "solo"


@needs_solo
@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet18", "test_resnet"])
def test_checkpoints_cross_hosts_in_both_directions(tiny_cub, tmp_path, backbone):
    """resnet18 is torchvision's under solo-learn and timm's on the runtime (same key names);
    test_resnet is a timm model, wrapped (``model.``) under solo-learn only."""
    here = "solo" if host.HOST_NAME == "solo-learn" else "runtime"
    for writer, reader in ((here, _other(host.HOST_NAME)), (_other(host.HOST_NAME), here)):
        ckpt = _run(writer, "write", tiny_cub, str(tmp_path / writer), backbone)
        origin = safe_load(ckpt)["clinfonce_backbone"]
        wrapped = writer == "solo" and backbone == "test_resnet"
        assert origin == {"host": "solo-learn" if writer == "solo" else "runtime",
                          "name": backbone, "prefix": "model." if wrapped else ""}
        npz = str(tmp_path / f"{writer}-to-{reader}.npz")
        assert _run(reader, "read", ckpt, npz) == ("solo-learn" if reader == "solo"
                                                   else "runtime")
        loaded = dict(np.load(npz))
        stored = {k: v.numpy() for k, v in fit_keys(backbone_weights(ckpt), loaded).items()}
        assert sorted(stored) == sorted(loaded)
        assert all(np.array_equal(stored[k], loaded[k]) for k in stored)


@needs_solo
@pytest.mark.slow
def test_solo_learns_own_linear_recipe_loads_our_resnet_checkpoint(tiny_cub, tmp_path):
    """What solo-learn's main_linear.py does with a checkpoint: build the backbone from its
    own table, drop fc, strip ``backbone.`` and load_state_dict (strict=False). Every tensor
    of our runtime-written checkpoint must land (no missing, no unexpected key)."""
    from solo.methods.base import BaseMethod

    ckpt = _run("runtime", "write", tiny_cub, str(tmp_path), "resnet18")
    model = BaseMethod._BACKBONES["resnet18"](method="simclr")
    model.fc = torch.nn.Identity()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    state = {k.replace("backbone.", ""): v for k, v in state.items() if "backbone" in k}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == [] and unexpected == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
