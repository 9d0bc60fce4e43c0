"""One epoch of clinfonce with the CIFAR-100 superclasses as hierarchy clusters (the dataset's
own 2-level hierarchy, no pairs file) on a tiny official python-pickle CIFAR-100, then
linear evaluation: the scripts/ config with only the data root changed."""
import os

import pytest

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.data.test_cifar_reader import write_cifar100
from tests.helpers import yaml_linear_cfg, yaml_pretrain_cfg


@pytest.mark.slow
def test_superclass_clinfonce_on_cifar100_then_linear(tmp_path):
    root, splits = write_cifar100(tmp_path)
    _, fine, coarse = splits["train"]
    cfg = yaml_pretrain_cfg("clinfonce_hierarchy_cifar100", "symmetric_32", str(root),
                            str(tmp_path / "runs"), max_epochs=1)
    cfg.optimizer.batch_size = len(fine)  # the fixture holds 4 training images
    cfg.backbone.name = "resnet18"
    cfg.accelerator, cfg.devices, cfg.precision = "cpu", 1, "32-true"
    assert cfg.method_kwargs.clusters.level == 2 and "pairs_file" not in cfg.method_kwargs.clusters
    ckpt = pretrain(cfg)
    state = safe_load(ckpt)["state_dict"]
    # level 2 = the superclasses "super<c>"; ids number the node names in sorted order
    names = sorted({f"super{c}" for c in coarse})
    assert state["provider.ids"].tolist() == [names.index(f"super{c}") for c in coarse]

    lin = yaml_linear_cfg("clinfonce_hierarchy_cifar100", ckpt, str(root), max_epochs=2)
    assert lin.accelerator == "gpu"  # the config's: falls back to the CPU on this machine
    res = linear_eval(lin)
    assert res["num_train"] == len(fine) and res["num_test"] == len(splits["test"][1])
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
    assert os.path.isfile(os.path.join(os.path.dirname(ckpt), "args.json"))
