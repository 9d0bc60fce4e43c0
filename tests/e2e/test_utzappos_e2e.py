"""A tiny end-to-end run on the official UT-Zappos50K layout: pretrain clinfonce with
attribute clusters (cifar-stem ResNet-18, 32 px, one epoch) -> linear evaluation on the
seeded 7:3 split."""
import json
import os

import pytest

from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.data.utzappos_fixture import write_release
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg


@pytest.mark.slow
def test_utzappos_attribute_clinfonce_then_linear(tmp_path):
    root = str(write_release(tmp_path / "ut-zap50k"))
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", root,
                            str(tmp_path / "runs"), max_epochs=1)
    cfg.name = "clinfonce-utzappos"
    cfg.data.dataset = "utzappos"
    cfg.data.split_seed = 0
    cfg.backbone.name = "resnet18"
    cfg.backbone.cifar_stem = True
    cfg.optimizer.batch_size = 4  # 7 training images
    cfg.method_kwargs.clusters = {"provider": "attributes", "k": 4}
    ckpt = pretrain(cfg)
    run_dir = os.path.dirname(ckpt)
    args = json.load(open(os.path.join(run_dir, "args.json")))
    assert args["data"]["dataset"] == "utzappos" and args["data"]["num_classes"] == 5

    lin = yaml_linear_cfg("clinfonce_synthetic_cub", ckpt, root, max_epochs=1)
    lin.name = "linear-clinfonce-utzappos"
    lin.data.dataset = None  # inherited from the pretrain run, with its split_seed
    res = linear_eval(lin)
    assert res["num_train"] == 7 and res["num_test"] == 3
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
