"""Shared fixtures: small pretrain configs in the solo-learn schema."""
import os
import sys

import pytest
from omegaconf import OmegaConf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def augmentation(crop_size=32, num_crops=2):
    return {
        "rrc": {"enabled": True, "crop_min_scale": 0.3, "crop_max_scale": 1.0},
        "color_jitter": {"prob": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.2,
                         "hue": 0.05},
        "grayscale": {"prob": 0.1}, "gaussian_blur": {"prob": 0.0},
        "solarization": {"prob": 0.0}, "equalization": {"prob": 0.0},
        "horizontal_flip": {"prob": 0.5}, "crop_size": crop_size, "num_crops": num_crops,
    }


def make_cfg(method="simclr", dataset="synthetic_cub", train_path="unused", num_classes=5,
             backbone="test_resnet", **method_kwargs):
    """A parsed-looking config (what the config check and parse_cfg would produce) for
    building methods directly: every schema key a test leaves out takes its default."""
    from clinfonce_plugin.config import saved_pretrain_cfg

    kw = {"proj_hidden_dim": 32, "proj_output_dim": 16, "temperature": 0.2}
    kw.update(method_kwargs)
    return saved_pretrain_cfg({
        "name": f"{method}-test", "method": method,
        "backbone": {"name": backbone, "kwargs": {}},
        "method_kwargs": kw,
        "data": {"dataset": dataset, "train_path": train_path, "num_classes": num_classes,
                 "num_large_crops": 2, "num_small_crops": 0, "num_workers": 0},
        "optimizer": {"name": "sgd", "batch_size": 8, "lr": 0.1, "classifier_lr": 0.1,
                      "weight_decay": 1e-4, "kwargs": {"momentum": 0.9},
                      "exclude_bias_n_norm_wd": False},
        "scheduler": {"name": "warmup_cosine", "warmup_epochs": 1},
        "max_epochs": 2, "accumulate_grad_batches": 1,
        "knn_eval": {"enabled": False}, "performance": {"disable_channel_last": True},
        "augmentations": [augmentation()],
    })


@pytest.fixture
def cfg_factory():
    return make_cfg


@pytest.fixture(scope="module")
def tiny_cub(tmp_path_factory):
    """A 6-class, 12-images-per-class synthetic CUB in the CUB-200-2011 layout."""
    from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

    root = tmp_path_factory.mktemp("data") / "synthetic_cub"
    generate_synthetic_cub(root, seed=0, num_classes=6, images_per_class=12)
    return str(root)
