"""Fixtures of the end-to-end tests."""
import pytest

from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub


@pytest.fixture(scope="module")
def tiny_cub(tmp_path_factory):
    """A 6-class, 12-images-per-class synthetic CUB in the CUB-200-2011 layout."""
    root = tmp_path_factory.mktemp("data") / "synthetic_cub"
    generate_synthetic_cub(root, seed=0, num_classes=6, images_per_class=12)
    return str(root)
