"""Subprocess half of test_portable_checkpoints: under the host chosen by CLINFONCE_HOST,
``write <root> <out> <backbone>`` pretrains one tiny epoch and prints the checkpoint;
``read <ckpt> <npz>`` loads its backbone with the plugin's loader and saves the weights."""
import sys

import numpy as np

from clinfonce_plugin import host
from clinfonce_plugin.run.checkpoints import load_backbone
from clinfonce_plugin.evaluate.pretrained import load_pretrained_backbone
from tests.helpers import yaml_pretrain_cfg


def write(root: str, out: str, backbone: str) -> None:
    from clinfonce_plugin.run.pretrain import pretrain

    cfg = yaml_pretrain_cfg("simclr_synthetic_cub", "symmetric_32", root, out, max_epochs=1)
    cfg.backbone.name = backbone
    cfg.name = f"portable-{backbone}-{host.HOST_NAME}"
    cfg.accelerator, cfg.devices, cfg.precision = "cpu", 1, "32-true"
    print(pretrain(cfg))


def read(ckpt: str, npz: str) -> None:
    backbone, _, pre_cfg = load_pretrained_backbone(ckpt)
    load_backbone(backbone, ckpt, pre_cfg.backbone.name)  # the initialisation path too
    np.savez(npz, **{k: v.numpy() for k, v in backbone.state_dict().items()})
    print(host.HOST_NAME)


if __name__ == "__main__":
    {"write": write, "read": read}[sys.argv[1]](*sys.argv[2:])
