"""A tiny synthetic CUB (6 classes, 36 training images) and its family files, shared by the
study tests."""
import pytest


@pytest.fixture(scope="session")
def tiny_cub(tmp_path_factory):
    from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

    root = tmp_path_factory.mktemp("study-data") / "cub"
    generate_synthetic_cub(str(root), seed=0, num_classes=6, images_per_class=12)
    return str(root)


@pytest.fixture(scope="session")
def tiny_families(tiny_cub, tmp_path_factory):
    from clinfonce_plugin.study.__main__ import main

    out = tmp_path_factory.mktemp("study-families")
    main(["families", "--config-name", "clinfonce_synthetic_cub", f"data.train_path={tiny_cub}",
          "--out", str(out)])
    return str(out)
