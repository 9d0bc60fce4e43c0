"""One epoch of clinfonce with WordNet hierarchy clusters on a tiny ImageNet-100 tree (a class
list, wordnet.is_a.txt) with the online probe, then linear evaluation of the checkpoint; in
the sorted layout (train/<wnid>, val/<wnid>) and in the Kaggle tree as downloaded (flat val/
labelled by LOC_val_solution.csv), where kNN evaluation runs too."""
import json
import os

import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.run.checkpoints import safe_load
from clinfonce_plugin.evaluate.knn import knn_eval
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import REPO, yaml_linear_cfg, yaml_pretrain_cfg
from tests.imagenet_fixture import IMAGES, write_imagenet_tree

LISTED = ("n01440764", "n01443537", "n02085620", "n02123045")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["folders", "kaggle"])
def test_hierarchy_clinfonce_on_imagenet100_then_linear(tmp_path, capsys, layout):
    root = str(write_imagenet_tree(tmp_path, layout))
    cfg = yaml_pretrain_cfg("clinfonce_hierarchy_cifar100", "symmetric_32", root,
                            str(tmp_path / "runs"), max_epochs=1)
    cfg.name = "clinfonce-hierarchy-imagenet100-test"
    cfg.data.dataset = "imagenet100"
    cfg.data.class_list = "classes.txt"          # found under the root
    cfg.data.val_path = root                     # online probe on val/<wnid>
    cfg.backbone = {"name": "resnet18", "cifar_stem": True}
    cfg.accelerator, cfg.devices, cfg.precision = "cpu", 1, "32-true"
    cfg.method_kwargs.clusters = {"provider": "hierarchy", "pairs_file": "wordnet.is_a.txt",
                                  "level": 3}
    ckpt = pretrain(cfg)
    out = capsys.readouterr().out
    assert "imagenet100 train: 16 images, 4 classes" in out
    assert "imagenet100 test: 6 images, 4 classes" in out  # the online probe's split
    run_dir = os.path.dirname(ckpt)
    args = json.load(open(os.path.join(run_dir, "args.json")))
    assert args["data"]["num_classes"] == 4 and args["data"]["class_list"] == "classes.txt"
    state = safe_load(ckpt)["state_dict"]
    # level 3 of the fixture's WordNet fragment: fish n02512053 (tench 4 + goldfish 3
    # images) and mammal n01861778 (Chihuahua 5 + tabby 4), samples in sorted-wnid order;
    # cluster ids follow the sorted node names, so mammal is 0 and fish 1
    expected = [1] * (IMAGES["n01440764"][0] + IMAGES["n01443537"][0]) + \
               [0] * (IMAGES["n02085620"][0] + IMAGES["n02123045"][0])
    assert state["provider.ids"].tolist() == expected

    lin = yaml_linear_cfg("clinfonce_hierarchy_cifar100", ckpt, root, max_epochs=2)
    lin.data.dataset = "imagenet100"             # class_list comes from the pretrain run
    lin.accelerator = "cpu"
    res = linear_eval(lin)
    assert res["num_train"] == 16 and res["num_test"] == sum(IMAGES[w][1] for w in LISTED)
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0

    if layout == "kaggle":
        knn = OmegaConf.load(os.path.join(REPO, "scripts/knn/clinfonce_synthetic_cub.yaml"))
        knn.pop("defaults")
        knn.pop("hydra")
        knn.pretrained, knn.data.train_path, knn.data.num_workers = ckpt, root, 0
        knn.data.dataset = "imagenet100"
        res = knn_eval(knn)
        assert res["num_train"] == 16 and res["num_test"] == 6
