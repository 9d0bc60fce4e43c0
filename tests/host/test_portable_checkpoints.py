"""A checkpoint written under one host loads under the other (issue 14, item 4): the
checkpoint records its backbone's origin and key layout, the loader maps the layouts
(timm models bare on the runtime, wrapped under solo-learn), and solo-learn's own
main_linear recipe loads our ResNet checkpoints, and its LinearModel trains on them. The
cross-host tests need solo-learn and skip cleanly without it."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from clinfonce_plugin import host
from clinfonce_plugin.run.checkpoints import backbone_weights, fit_keys, safe_load

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


@needs_solo
@pytest.mark.slow
def test_solo_learns_linear_model_trains_on_our_checkpoint(tiny_cub, tmp_path):
    """solo-learn's own ``solo.methods.linear.LinearModel`` fed the backbone of our
    runtime-written checkpoint (main_linear.py's loading recipe) trains a linear epoch with
    solo-learn's Trainer loop: its features are the ones our own loader gives, the frozen
    backbone is left as loaded, and the classifier learns."""
    import lightning.pytorch as pl
    from omegaconf import OmegaConf
    from solo.methods.base import BaseMethod
    from solo.methods.linear import LinearModel
    from torch.utils.data import DataLoader

    from clinfonce_plugin.data.indexed import TransformedImages
    from clinfonce_plugin.data.registry import open_split
    from clinfonce_plugin.data.transforms import eval_transform
    from clinfonce_plugin.evaluate.pretrained import load_pretrained_backbone

    ckpt = _run("runtime", "write", tiny_cub, str(tmp_path), "resnet18")
    # solo-learn's main_linear.py: its own backbone table, fc dropped, backbone.* stripped
    backbone = BaseMethod._BACKBONES["resnet18"](method="simclr")
    backbone.fc = torch.nn.Identity()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    backbone.load_state_dict({k.replace("backbone.", ""): v for k, v in state.items()
                              if "backbone" in k}, strict=False)
    ours, dim, pre_cfg = load_pretrained_backbone(ckpt)
    split = open_split(pre_cfg.data, "train")
    data = TransformedImages(split.dataset, eval_transform(pre_cfg))
    cfg = OmegaConf.create({
        "data": {"num_classes": split.num_classes}, "max_epochs": 2,
        "optimizer": {"name": "sgd", "batch_size": 24, "lr": 0.5, "weight_decay": 0.0,
                      "kwargs": {"momentum": 0.9}},
        "scheduler": {"name": "none"}, "performance": {"disable_channel_last": True}})
    model = LinearModel(backbone, cfg)
    images, _ = next(iter(DataLoader(data, batch_size=len(data))))
    model.eval(), ours.eval()
    with torch.no_grad():
        feats = model(images)["feats"]
        assert feats.shape == (len(data), dim)
        torch.testing.assert_close(feats, ours(images), rtol=1e-5, atol=1e-5)
        logits_before = model(images)["logits"]
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}
    head = model.classifier.weight.detach().clone()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0)
    loader = DataLoader(data, batch_size=24, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    trainer.fit(model, loader, DataLoader(data, batch_size=24))
    assert trainer.current_epoch == 2 and "val_acc1" in trainer.callback_metrics
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in frozen.items())
    assert not torch.equal(model.classifier.weight, head)
    model.eval()
    with torch.no_grad():
        labels = torch.tensor([split.dataset[i][1] for i in range(len(data))])
        loss = torch.nn.functional.cross_entropy
        assert loss(model(images)["logits"], labels) < loss(logits_before, labels)
