"""Dataset registry: name -> builder of (dataset of (image, target), SampleInfo, num_classes)."""
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

from torch.utils.data import Dataset

from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.cifar import CifarImages, read_cifar10, read_cifar100
from clinfonce_plugin.data.cub import CubImages, Split, read_cub

Built = Tuple[Dataset, SampleInfo, int]


def build_cub(root: Union[str, Path], split: Split, transform: Optional[Callable] = None) -> Built:
    """CUB-200-2011 from its official layout; root is the CUB_200_2011 directory."""
    meta = read_cub(root)
    return CubImages(meta, split, transform), meta.sample_info(split), meta.num_classes


def build_synthetic_cub(root: Union[str, Path], split: Split,
                        transform: Optional[Callable] = None) -> Built:
    """The synthetic CUB-format dataset: root holds exactly the CUB layout and is read by
    the CUB reader. When root does not exist yet it is generated with the default
    parameters (deterministic, seconds, nothing downloaded); an existing root is used as is.
    """
    if not Path(root).exists():
        # imported here: the generator is only needed when the data is missing
        from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

        generate_synthetic_cub(root)
    return build_cub(root, split, transform)


def build_cifar10(root: Union[str, Path], split: Split,
                  transform: Optional[Callable] = None) -> Built:
    """CIFAR-10 from the official python-pickle layout; root is cifar-10-batches-py (or the
    directory containing it)."""
    data = read_cifar10(root, split)
    return CifarImages(data, transform), data.sample_info(), data.num_classes


def build_cifar100(root: Union[str, Path], split: Split,
                   transform: Optional[Callable] = None) -> Built:
    """CIFAR-100 (fine labels) from the official python-pickle layout; root is
    cifar-100-python (or the directory containing it)."""
    data = read_cifar100(root, split)
    return CifarImages(data, transform), data.sample_info(), data.num_classes


DATASETS: Dict[str, Callable[..., Built]] = {
    "cub": build_cub,
    "synthetic_cub": build_synthetic_cub,
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
}


def build_dataset(name: str, root: Union[str, Path], split: Split,
                  transform: Optional[Callable] = None) -> Built:
    """(dataset of (image, target), SampleInfo of that split, num_classes) for a registered name.

    The dataset's index i and SampleInfo row i describe the same image.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}. Choose from {sorted(DATASETS)}")
    return DATASETS[name](root, split, transform)
