"""Linear evaluation's two protocols without a pretrain run: the paper protocol's training
crops change every epoch (in the main process and in workers) while its test images are the
deterministic centre crop computed by hand; the preset filling of unset keys; the config
errors; the documented preset table equals config.LINEAR_PRESETS."""
import os
import re

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from clinfonce_plugin.config import ConfigError, LINEAR_PRESETS, check_linear_cfg, linear_preset
from clinfonce_plugin.evaluate.shared import crop_loaders
from tests.conftest import augmentation
from tests.helpers import entry_point_errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _images(n=3):
    """n random RGB images, 32 wide and 40 high: the resize to 32 leaves them as they are,
    so the centre crop is rows 4..35."""
    rng = np.random.RandomState(0)
    arrays = [rng.randint(0, 256, (40, 32, 3), dtype=np.uint8) for _ in range(n)]
    return arrays, [(Image.fromarray(a), i) for i, a in enumerate(arrays)]


def _epochs(loader, n=2):
    out = []
    for _ in range(n):
        batches = list(loader)
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        out.append(x[y.argsort()])  # image order, whatever the shuffle
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_paper_training_crops_change_every_epoch_and_test_is_the_centre_crop(workers):
    torch.manual_seed(0)
    arrays, images = _images()
    pre_cfg = OmegaConf.create({"data": {"dataset": "synthetic_cub"},
                                "augmentations": [augmentation(32)]})
    train_loader, test_loader = crop_loaders(pre_cfg, images, images, 0.08, 3, 2, workers)
    first, second = _epochs(train_loader)
    assert first.shape == (3, 3, 32, 32)
    for i in range(3):  # every image gets a new crop in the next epoch
        assert not torch.allclose(first[i], second[i])
    centre = np.stack([(a[4:36].astype(np.float64) / 255 - MEAN) / STD for a in arrays])
    centre = torch.from_numpy(centre).permute(0, 3, 1, 2).float()
    test_a, test_b = _epochs(test_loader)
    assert torch.equal(test_a, test_b)
    assert torch.allclose(test_a, centre, atol=1e-5)
    assert not any(torch.allclose(first[i], centre[i], atol=1e-3) for i in range(3))


def test_a_last_training_batch_of_one_image_is_dropped():
    # batch norm in train mode (fine-tuning) fails on a batch of one image
    _, images = _images(5)
    pre_cfg = OmegaConf.create({"data": {"dataset": "synthetic_cub"},
                                "augmentations": [augmentation(32)]})
    sizes = {b: [len(y) for _, y in crop_loaders(pre_cfg, images, images, 0.5, b, 5, 0)[0]]
             for b in (2, 3, 4)}
    assert sizes == {2: [2, 2], 3: [3, 2], 4: [4]}


def _cfg(**keys):
    return check_linear_cfg(OmegaConf.create({"pretrained": "x.ckpt", **keys}))


def test_unset_keys_come_from_the_protocols_preset():
    cfg = _cfg()
    assert linear_preset(cfg, "wcl") == "features"  # the fast probe whatever the method
    assert (cfg.max_epochs, cfg.optimizer.lr, cfg.optimizer.nesterov) == (100, 0.1, False)
    cfg = _cfg(protocol="paper")
    assert linear_preset(cfg, "wcl") == "wcl"
    assert (cfg.max_epochs, cfg.crop_min_scale, cfg.optimizer.scale_lr,
            cfg.scheduler.interval) == (80, 0.08, True, "step")
    cfg = _cfg(protocol="paper", max_epochs=3, optimizer={"nesterov": False})
    assert linear_preset(cfg, "supcon") == "clinfonce"
    assert (cfg.max_epochs, cfg.optimizer.nesterov, cfg.optimizer.lr,
            cfg.optimizer.momentum) == (3, False, 0.3, 0.95)
    cfg = _cfg(protocol="paper", paper_preset="wcl")
    assert linear_preset(cfg, "clinfonce") == "wcl" and cfg.max_epochs == 80


@pytest.mark.parametrize("keys, message", [
    ({"protocol": "papers"}, r"protocol: expected one of \['features', 'paper'\], got 'papers'"),
    ({"crop_min_scale": 0.2}, r"crop_min_scale: only used by protocol=paper"),
    ({"paper_preset": "wcl"}, r"paper_preset: only used by protocol=paper"),
    ({"protocol": "paper", "paper_preset": "simclr"}, r"paper_preset: expected one of"),
    ({"protocol": "paper", "crop_min_scale": 0.0}, r"crop_min_scale: expected a value > 0"),
])
def test_bad_protocol_keys_are_refused(keys, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**keys)


def test_nesterov_without_momentum_is_refused():
    cfg = _cfg(protocol="paper", optimizer={"momentum": 0.0})
    with pytest.raises(ConfigError, match="optimizer.nesterov: Nesterov momentum needs "
                                          "optimizer.momentum > 0"):
        linear_preset(cfg, "wcl")


def test_main_linear_bad_protocol_exits_2_with_one_error_line():
    code, errors, stderr = entry_point_errors("main_linear.py", "--config-name",
                                              "clinfonce_synthetic_cub.yaml", "protocol=paperr")
    assert code == 2 and "Traceback" not in stderr
    assert errors == ["error: command line (protocol=paperr): protocol: expected one of "
                      "['features', 'paper'], got 'paperr'"]


def _documented_presets():
    """{preset: {key: value as written}} of docs/configuration.md's preset table."""
    text = open(os.path.join(REPO, "docs", "configuration.md"), encoding="utf-8").read()
    section = text.split("## Linear evaluation presets", 1)[1].split("\n## ", 1)[0]
    rows = [r.strip().strip("|").split("|") for r in section.splitlines() if r.startswith("|")]
    names = [c.strip(" `") for c in rows[0][1:]]
    out = {n: {} for n in names}
    for row in rows[2:]:
        key = row[0].strip(" `")
        for name, cell in zip(names, row[1:]):
            out[name][key] = cell.strip()
    return out


def _flat(values, prefix=""):
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def test_documented_presets_equal_the_code():
    assert _documented_presets() == {name: _flat(p) for name, p in LINEAR_PRESETS.items()}
    assert re.search(r"`paper_preset`", open(os.path.join(REPO, "docs", "methods.md")).read())
