"""Every yaml in scripts/ loads through hydra and passes the checks run before training; the
commands in the README and docs/ name configs that exist."""
import glob
import os
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from clinfonce_plugin import host
from clinfonce_plugin.config import check_pretrain_cfg
from clinfonce_plugin.data.registry import DATASETS
from clinfonce_plugin.config import check_finetune_cfg, check_knn_cfg, check_plot_cfg
from clinfonce_plugin.config import check_linear_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN = sorted(glob.glob(os.path.join(REPO, "scripts/pretrain/*.yaml")))
LINEAR = sorted(glob.glob(os.path.join(REPO, "scripts/linear/*.yaml")))
KNN = sorted(glob.glob(os.path.join(REPO, "scripts/knn/*.yaml")))
FINETUNE = sorted(glob.glob(os.path.join(REPO, "scripts/finetune/*.yaml")))


def _compose(folder, path):
    with initialize_config_dir(config_dir=os.path.join(REPO, folder), version_base="1.2"):
        return compose(config_name=os.path.basename(path))


@pytest.mark.parametrize("path", PRETRAIN, ids=os.path.basename)
def test_pretrain_config_passes_the_checks(path):
    cfg = _compose("scripts/pretrain", path)
    OmegaConf.set_struct(cfg, False)
    stem = os.path.basename(path)[:-5]
    # file name = <method>[_<variant>]_<dataset>
    assert stem.startswith(cfg.method + "_") and stem.endswith("_" + cfg.data.dataset)
    cfg = check_pretrain_cfg(cfg, DATASETS, host.METHODS, path)
    cfg.data.num_classes = 2
    cfg.data.num_large_crops, cfg.data.num_small_crops = 2, 0
    host.METHODS[cfg.method].add_and_assert_specific_cfg(cfg)


@pytest.mark.parametrize("path", LINEAR, ids=os.path.basename)
def test_linear_config_passes_the_checks(path):
    cfg = check_linear_cfg(_compose("scripts/linear", path), path)
    assert cfg.pretrained.endswith(".ckpt")
    assert os.path.basename(path) in {os.path.basename(p) for p in PRETRAIN}


@pytest.mark.parametrize("path", KNN, ids=os.path.basename)
def test_knn_config_passes_the_checks(path):
    cfg = check_knn_cfg(_compose("scripts/knn", path), path)
    assert cfg.pretrained.endswith(".ckpt")
    assert os.path.basename(path) in {os.path.basename(p) for p in PRETRAIN}


def test_the_plot_config_passes_the_checks():
    path = os.path.join(REPO, "scripts/plot/embedding.yaml")
    with initialize_config_dir(config_dir=os.path.dirname(path), version_base="1.2"):
        cfg = compose(config_name="embedding.yaml", overrides=["++pretrained=x.ckpt"])
    assert check_plot_cfg(cfg, path).split == "train"


@pytest.mark.parametrize("path", FINETUNE, ids=os.path.basename)
def test_finetune_config_passes_the_checks(path):
    cfg = check_finetune_cfg(_compose("scripts/finetune", path), path)
    assert cfg.pretrained.endswith(".ckpt")
    # <pretrain config>[_<labels>].yaml
    stem = re.sub(r"_\d+pct$", "", os.path.basename(path)[:-5])
    assert f"{stem}.yaml" in {os.path.basename(p) for p in PRETRAIN}


def test_there_are_finetune_configs():
    names = {os.path.basename(p) for p in FINETUNE}
    assert {"clinfonce_synthetic_cub.yaml", "wcl_imagenet100_1pct.yaml",
            "wcl_imagenet100_10pct.yaml"} <= names


def test_there_are_knn_configs():
    assert "clinfonce_synthetic_cub.yaml" in {os.path.basename(p) for p in KNN}


def _read(path):
    with open(path) as f:
        return f.read()


DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs/*.md")))


def test_readme_and_docs_commands_name_existing_configs():
    readme = _read(os.path.join(REPO, "README.md"))
    assert "clinfonce_synthetic_cub.yaml" in set(re.findall(r"--config-name (\S+\.yaml)", readme))
    # each entry point reads its own folder; a command without one names a pretrain config
    folders = {"main_linear": "linear", "main_knn": "knn", "main_finetune": "finetune"}
    commands = {m for path in DOCS for m in re.findall(
        r"(?:(main_\w+)\.py[^\n]*?)?--config-name (\S+\.yaml)", _read(path))}
    for script, name in commands:
        folder = folders.get(script, "pretrain")
        assert os.path.isfile(os.path.join(REPO, "scripts", folder, name)), (script, name)
    assert "pip install -e \".[test,plots]\" && python -m pytest -q" in readme
    assert "python -m pytest -q" in _read(os.path.join(REPO, ".ci/run"))


def test_readme_stays_short():
    # the details live in docs/ (issue 12): the README says what, how to run, where to read on
    assert len(_read(os.path.join(REPO, "README.md")).splitlines()) <= 200


# The papers' values, written out by hand from the papers (Cl-InfoNCE App. E, WCL Sec. 4.1):
# config -> (effective lr after solo-learn's batch x devices / 256 scaling, total batch,
# temperature, momentum, epochs). None: the method has no temperature.
PAPER = {
    "clinfonce_utzappos.yaml": (0.17, 128, 0.07, 0.95, 1000),
    "clinfonce_labels_utzappos.yaml": (0.17, 128, 0.07, 0.95, 1000),
    "clinfonce_instance_utzappos.yaml": (0.17, 128, 0.07, 0.95, 1000),
    "clinfonce_kmeans_utzappos.yaml": (0.1, 128, 0.1, 0.95, 1000),
    "clinfonce_wider_attribute.yaml": (0.1, 40, 0.1, 0.95, 1000),
    "clinfonce_kmeans_wider_attribute.yaml": (0.1, 40, 0.1, 0.95, 1000),
    "clinfonce_cub.yaml": (0.1, 128, 0.1, 0.95, 1000),
    "clinfonce_kmeans_cub.yaml": (0.1, 128, 0.1, 0.95, 1000),
    "clinfonce_kmeans_imagenet100.yaml": (0.03, 128, 0.2, 0.95, 200),
    "clinfonce_hierarchy_imagenet100.yaml": (0.1, 128, 0.1, 0.95, 200),
    "wcl_cifar10.yaml": (0.25, 256, 0.1, 0.9, 400),
    "wcl_instance_cifar100.yaml": (0.25, 256, 0.1, 0.9, 400),
    "wcl_imagenet100.yaml": (0.075 * 2048 ** 0.5, 2048, 0.1, 0.9, 200),
    "wcl_twoview_imagenet100.yaml": (0.075 * 2048 ** 0.5, 2048, 0.1, 0.9, 200),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_configs_hold_the_papers_values(name):
    cfg = _compose("scripts/pretrain", os.path.join(REPO, "scripts/pretrain", name))
    lr, batch, tau, momentum, epochs = PAPER[name]
    devices = len(cfg.devices) if not isinstance(cfg.devices, int) else cfg.devices
    total = cfg.optimizer.batch_size * devices
    assert total == batch
    assert cfg.optimizer.lr * total / 256 == pytest.approx(lr, rel=1e-5)
    assert cfg.method_kwargs.get("temperature") == tau
    assert cfg.optimizer.kwargs.momentum == momentum and cfg.max_epochs == epochs


def test_kmeans_cluster_counts_follow_appendix_e():
    for name, k in (("clinfonce_kmeans_utzappos.yaml", 1000), ("clinfonce_kmeans_cub.yaml", 1000),
                    ("clinfonce_kmeans_wider_attribute.yaml", 1000),
                    ("clinfonce_kmeans_imagenet100.yaml", 2500)):
        cfg = _compose("scripts/pretrain", os.path.join(REPO, "scripts/pretrain", name))
        assert cfg.method_kwargs.clusters.k == k, name


@pytest.mark.parametrize("dataset", ["utzappos", "wider_attribute", "cub", "imagenet100"])
def test_pcl_configs_are_their_kmeans_runs_with_pcls_own_values(dataset):
    def load(name):
        cfg = _compose("scripts/pretrain", os.path.join(REPO, "scripts/pretrain", name))
        return OmegaConf.to_container(cfg, resolve=True)

    pcl, km = load(f"pcl_{dataset}.yaml"), load(f"clinfonce_kmeans_{dataset}.yaml")
    # Cl-InfoNCE App. E: 'the same network architecture and cluster number' for PCL; the
    # rest (optimizer, schedule, augmentations, epochs) is the K-means run's
    for key in ("backbone", "data", "optimizer", "scheduler", "augmentations", "max_epochs",
                "devices", "precision"):
        assert pcl[key] == km[key], key
    kw, km_kw = pcl["method_kwargs"], km["method_kwargs"]
    for key in ("proj_hidden_dim", "proj_output_dim", "temperature"):
        assert kw[key] == km_kw[key], key
    for key in ("k", "iterations", "seed", "space", "period"):
        assert kw["clusters"][key] == km_kw["clusters"][key], key
    # PCL's official main_pcl.py: --warmup-epoch 20, nredo 5, --pcl-r 16384
    assert (kw["clusters"]["warmup_epochs"], kw["clusters"]["nredo"], kw["num_negatives"]) == \
        (20, 5, 16384)
    # the K-means Cl-InfoNCE runs: the official run script's warm-up 0 and run_kmeans' nredo 5
    assert (km_kw["clusters"]["warmup_epochs"], km_kw["clusters"]["nredo"]) == (0, 5)


def test_wcl_imagenet_configs_warm_up_with_the_weaker_augmentation():
    for name in ("wcl_imagenet100.yaml", "wcl_multicrop_imagenet100.yaml",
                 "wcl_twoview_imagenet100.yaml", "wcl_instance_imagenet100.yaml"):
        cfg = _compose("scripts/pretrain", os.path.join(REPO, "scripts/pretrain", name))
        assert cfg.warmup_augmentation_epochs == 10
        # MoCo v2's jitter 0.4/0.4/0.4/0.1 on the large views, SimCLR's 0.8/0.8/0.8/0.2 after
        assert cfg.warmup_augmentations[0].color_jitter.brightness == 0.4
        assert cfg.augmentations[0].color_jitter.brightness == 0.8
        assert [(a.crop_size, a.num_crops) for a in cfg.warmup_augmentations] == \
            [(a.crop_size, a.num_crops) for a in cfg.augmentations]


def test_linear_configs_follow_each_papers_protocol():
    for path in LINEAR:
        cfg = _compose("scripts/linear", path)
        name = os.path.basename(path)
        if name.startswith("wcl_") and "synthetic" not in name:
            # WCL Sec. 4.1: 80 epochs, momentum 0.9, lr 0.1 x batch/256, no weight decay
            assert cfg.max_epochs == 80 and cfg.optimizer.momentum == 0.9, name
            assert cfg.optimizer.lr == pytest.approx(0.1 * cfg.optimizer.batch_size / 256), name
            assert cfg.optimizer.weight_decay == 0.0, name
