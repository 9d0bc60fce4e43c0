"""cmc_attributes end to end on the tiny synthetic CUB (it has attributes) with
scripts/pretrain/cmc_attributes_synthetic_cub.yaml: one epoch of pretraining, the checkpoint
(attribute table and attribute MLP saved), then the linear evaluation of its backbone."""
import json
import os

import numpy as np
import pytest

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.data.registry import build_dataset
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg


@pytest.mark.slow
def test_cmc_attributes_pretrain_then_linear(tiny_cub, tmp_path):
    cfg = yaml_pretrain_cfg("cmc_attributes_synthetic_cub", "symmetric_32", tiny_cub,
                            str(tmp_path), max_epochs=1)
    ckpt = pretrain(cfg)
    run_dir = os.path.dirname(ckpt)
    args = json.load(open(os.path.join(run_dir, "args.json")))
    assert args["method"] == "cmc_attributes" and args["method_kwargs"]["attr_num_layers"] == 2
    state = safe_load(ckpt)["state_dict"]
    _, info, _ = build_dataset("synthetic_cub", tiny_cub, split="train")
    # the synthetic CUB's attributes are binary: the table is the training split's, row for row
    np.testing.assert_array_equal(state["attribute_table"].numpy(), info.attributes)
    assert state["attribute_encoder.0.weight"].shape[1] == info.attributes.shape[1]
    log = open(os.path.join(run_dir, "logs", "metrics.csv")).read().splitlines()[0]
    assert "train_cmc_loss_epoch" in log

    res = linear_eval(yaml_linear_cfg("clinfonce_synthetic_cub", ckpt, tiny_cub, max_epochs=2))
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0 and res["num_train"] == 36
