"""The paper linear protocol and semi-supervised fine-tuning end to end: pretrain 1 epoch on
the tiny synthetic CUB, then linear evaluation with protocol=paper and fine-tuning on 10 %
of the labels (JSON results; fine-tuning changes the backbone, the saved weights load as a
pretrained file); the fine-tuning entry point's config errors."""
import json
import os

import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin.errors import ConfigError, DataError
from clinfonce_plugin.evaluate.finetune import finetune_eval
from clinfonce_plugin.evaluate.linear import linear_eval
from clinfonce_plugin.evaluate.pretrained import load_pretrained_backbone
from clinfonce_plugin.run.pretrain import pretrain
from tests.helpers import entry_point_errors, yaml_linear_cfg, yaml_pretrain_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def ckpt(tiny_cub, tmp_path_factory):
    cfg = yaml_pretrain_cfg("clinfonce_synthetic_cub", "symmetric_32", tiny_cub,
                            str(tmp_path_factory.mktemp("runs")), max_epochs=1)
    cfg.method_kwargs.clusters = {"provider": "attributes", "k": 4}
    return pretrain(cfg)


def _finetune_cfg(ckpt, root, **keys):
    cfg = OmegaConf.load(os.path.join(REPO, "scripts/finetune/clinfonce_synthetic_cub.yaml"))
    cfg.pop("defaults")
    cfg.pop("hydra")
    cfg.pretrained, cfg.data.train_path, cfg.data.num_workers = ckpt, root, 0
    cfg.max_epochs, cfg.enable_progress_bar = 1, False
    cfg.optimizer = {"batch_size": 4}
    for key, value in keys.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.mark.slow
def test_linear_paper_protocol(ckpt, tiny_cub):
    lin = yaml_linear_cfg("clinfonce_synthetic_cub", ckpt, tiny_cub, max_epochs=2)
    lin.protocol = "paper"
    lin.optimizer = {"batch_size": 16}
    res = linear_eval(lin)
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
    # the clinfonce preset fills what the config leaves unset; lr not scaled by the batch
    assert (res["protocol"], res["preset"], res["epochs"], res["lr"], res["batch_size"]) == \
        ("paper", "clinfonce", 2, 0.3, 16)
    assert res["num_train"] == 36 and res["num_test"] == 36 and res["device"] == "cpu"
    saved = json.load(open(os.path.join(os.path.dirname(ckpt),
                                        "linear-clinfonce-synthetic_cub.json")))
    assert saved == res
    # 2 epochs of ceil(36 / 16) = 3 steps each in the CSV log
    log = os.path.join(os.path.dirname(ckpt), "linear_logs", "linear-clinfonce-synthetic_cub",
                       "metrics.csv")
    steps = [row.split(",") for row in open(log).read().splitlines()]
    assert max(int(r[steps[0].index("step")]) for r in steps[1:] if r[0]) >= 5


@pytest.mark.slow
def test_finetune_changes_the_backbone_and_reports_top1_top5(ckpt, tiny_cub):
    res = finetune_eval(_finetune_cfg(ckpt, tiny_cub))
    # 6 classes of 6 training images: 10 % rounds to 1 image per class
    assert (res["num_labelled"], res["num_train"], res["labelled_per_class"]) == \
        (6, 36, {"min": 1, "max": 1})
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0 and res["num_test"] == 36
    assert (res["label_fraction"], res["subset_seed"]) == (0.1, 0)
    name = os.path.join(os.path.dirname(ckpt), "finetune-clinfonce-synthetic_cub")
    assert json.load(open(name + ".json")) == res and res["weights"] == name + ".pt"
    before, _, _ = load_pretrained_backbone(ckpt)
    after, _, _ = load_pretrained_backbone(name + ".pt")  # weights-only, zoo format
    changed = [k for k, v in before.state_dict().items()
               if not torch.equal(v, after.state_dict()[k])]
    assert any(k.endswith("conv1.weight") for k in changed)
    assert any(k.endswith("running_mean") for k in changed)
    head = torch.load(name + ".pt", weights_only=True)["state_dict"]["head.weight"]
    assert head.shape == (6, before.eval()(torch.zeros(1, 3, 32, 32)).shape[1])


@pytest.mark.slow
def test_finetune_subset_file_errors_name_file_and_line(ckpt, tiny_cub, tmp_path):
    listed = tmp_path / "subset.txt"
    listed.write_text("images/001.nope/x.jpg\n")
    cfg = _finetune_cfg(ckpt, tiny_cub, label_fraction=None, subset_file=str(listed))
    with pytest.raises(DataError, match=rf"{listed}:1: 'images/001.nope/x.jpg' is not an "
                                        rf"image of the synthetic_cub train split"):
        finetune_eval(cfg)


def test_finetune_needs_exactly_one_way_to_choose_labels():
    cfg = OmegaConf.create({"pretrained": "x.ckpt", "label_fraction": 0.1,
                            "subset_file": "a.txt"})
    with pytest.raises(ConfigError, match="label_fraction: give label_fraction .* or "
                                          "subset_file .*, exactly one of them"):
        finetune_eval(cfg)
    with pytest.raises(ConfigError, match="subset_seed: only used with label_fraction"):
        finetune_eval(OmegaConf.create({"pretrained": "x.ckpt", "subset_file": "a.txt",
                                        "subset_seed": 3}))


@pytest.mark.parametrize("override, expected", [
    ("label_fracton=0.1", "error: command line (label_fracton=0.1): label_fracton: unknown key"),
    ("label_fraction=1.5", "error: command line (label_fraction=1.5): label_fraction: expected "
                           "a value <= 1, got 1.5"),
])
def test_main_finetune_bad_keys_exit_2(override, expected):
    code, errors, stderr = entry_point_errors("main_finetune.py", "--config-name",
                                              "clinfonce_synthetic_cub.yaml", override)
    assert code == 2 and "Traceback" not in stderr
    assert len(errors) == 1 and errors[0].startswith(expected)
