"""Dataset readers for official on-disk formats, index wrapping and the synthetic CUB generator."""
from clinfonce_plugin.data.cub import CubImages, CubMetadata, read_cub
from clinfonce_plugin.data.indexed import IndexedDataset
from clinfonce_plugin.data.registry import DATASETS, build_dataset

__all__ = [
    "CubImages",
    "CubMetadata",
    "DATASETS",
    "IndexedDataset",
    "build_dataset",
    "generate_synthetic_cub",
    "read_cub",
]


def __getattr__(name: str):
    # Lazy, so that `python -m clinfonce_plugin.data.synthetic_cub` does not find the module
    # already imported by its package (runpy warns about that).
    if name == "generate_synthetic_cub":
        from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

        return generate_synthetic_cub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
