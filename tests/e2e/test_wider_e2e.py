"""A tiny end-to-end run on WIDER Attribute's official layout: pretrain clinfonce with
attribute clusters (the OR-ed person attributes) for one epoch -> linear evaluation on the
test file's images."""
import json
import os

import numpy as np
import pytest

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.data.registry import build_dataset
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.data.wider_tree import write_generated_tree
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg


@pytest.mark.slow
def test_attribute_clinfonce_on_wider_then_linear(tmp_path):
    tree = write_generated_tree(tmp_path / "wider_attribute")  # 24 trainval, 12 test images
    root = str(tree.root)
    # the synthetic-CUB recipe (test_resnet, 32 px crops, symmetric_32) pointed at the tree
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", root, str(tmp_path / "runs"),
                            max_epochs=1)
    cfg.name = "clinfonce-wider_attribute"
    cfg.data.dataset = "wider_attribute"
    cfg.scheduler.warmup_epochs = 0
    cfg.method_kwargs.clusters = {"provider": "attributes", "k": 3}
    ckpt = pretrain(cfg)
    run_dir = os.path.dirname(ckpt)
    args = json.load(open(os.path.join(run_dir, "args.json")))
    assert args["data"]["dataset"] == "wider_attribute" and args["data"]["num_classes"] == 3

    # the provider's ids are the clusters of the top-3 highest-entropy OR-ed attributes
    state = safe_load(ckpt)["state_dict"]
    ids = state["provider.ids"].numpy()
    info = build_dataset("wider_attribute", root, "train")[1]
    # a 0/1 column's entropy grows with its minority count: rank by that, ties to lower index
    ones = info.attributes.sum(axis=0).astype(int)
    minority = np.minimum(ones, len(info.attributes) - ones)
    top = np.argsort(-minority, kind="stable")[:3]
    _, expected = np.unique(info.attributes[:, top], axis=0, return_inverse=True)
    assert len(ids) == 24 and len(set(ids.tolist())) > 1
    # same partition of the images (cluster numbering may differ)
    pairs = {(int(a), int(b)) for a, b in zip(ids, expected.reshape(-1))}
    assert len(pairs) == len(set(ids.tolist())) == len(set(expected.reshape(-1).tolist()))

    lin = yaml_linear_cfg("clinfonce_synthetic_cub", ckpt, root, max_epochs=2)
    lin.name = "linear-clinfonce-wider_attribute"
    lin.data.dataset = "wider_attribute"
    res = linear_eval(lin)
    assert res["num_train"] == 24 and res["num_test"] == 12
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
