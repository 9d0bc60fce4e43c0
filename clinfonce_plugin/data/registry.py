"""Dataset registry: name -> builder of (dataset of (image, target), SampleInfo, num_classes)."""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

from torch.utils.data import Dataset

from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.cifar import CifarImages, read_cifar10, read_cifar100
from clinfonce_plugin.data.cub import CubImages, Split, read_cub
from clinfonce_plugin.data.custom import LABELS_HINT, CustomImages, read_custom
from clinfonce_plugin.data.imagenet import build_imagenet, build_imagenet100
from clinfonce_plugin.data.images import should_verify, verify_images
from clinfonce_plugin.data.utzappos import ZapposImages, read_utzappos
from clinfonce_plugin.data.wider import WiderImages, read_wider
from clinfonce_plugin.errors import DataError

Built = Tuple[Dataset, SampleInfo, int]


def _noted(info: SampleInfo, root: Union[str, Path], folder: Path) -> SampleInfo:
    """``info`` with the folder the reader descended into (``data/roots.py``) in its log
    line, when it is not ``root`` itself."""
    if Path(folder) != Path(root):
        info.extra["layout"] = f"dataset folder {folder}"
    return info


def build_cub(root: Union[str, Path], split: Split, transform: Optional[Callable] = None) -> Built:
    """CUB-200-2011 from its official layout; root is the CUB_200_2011 directory or the
    folder the tarball was extracted into."""
    meta = read_cub(root)
    return (CubImages(meta, split, transform), _noted(meta.sample_info(split), root, meta.root),
            meta.num_classes)


DEFAULT_SYNTHETIC_ROOT = Path("datasets") / "synthetic_cub"
DEFAULT_BENCHMARK_ROOT = Path("datasets") / "synthetic_cub_bench"


def build_synthetic_cub(root: Union[str, Path], split: Split,
                        transform: Optional[Callable] = None,
                        generate: Optional[bool] = False) -> Built:
    """The synthetic CUB-format dataset: root holds exactly the CUB layout and is read by
    the CUB reader. A missing root is generated with the default parameters (deterministic,
    seconds, nothing downloaded) when it is the documented default ``datasets/synthetic_cub``
    or ``generate`` is set; any other missing root is an error (a misspelt path must not
    silently become a new dataset). An existing root is used as is.
    """
    _generate_if_missing(root, DEFAULT_SYNTHETIC_ROOT, generate, "synthetic_cub", {})
    return build_cub(root, split, transform)


def build_synthetic_cub_bench(root: Union[str, Path], split: Split,
                              transform: Optional[Callable] = None,
                              generate: Optional[bool] = False) -> Built:
    """The benchmark variant of the synthetic CUB (``synthetic_cub.BENCHMARK``): generated
    like ``synthetic_cub`` at its default ``datasets/synthetic_cub_bench``. An existing root
    must hold the synthetic CUB of exactly these parameters (the zoo's accuracies and the
    benchmark's tables were measured on it); anything else there is refused, never replaced."""
    from clinfonce_plugin.data.synthetic_cub import BENCHMARK, generate_synthetic_cub

    if not _generate_if_missing(root, DEFAULT_BENCHMARK_ROOT, generate, "synthetic_cub_bench",
                                BENCHMARK):
        generate_synthetic_cub(root, **BENCHMARK)  # ValueError naming the difference
    return build_cub(root, split, transform)


def _generate_if_missing(root, default_root: Path, generate, name: str, params: dict) -> bool:
    """Generates the synthetic CUB with ``params`` at a missing ``root`` when it is
    ``default_root`` (relative to the working directory) or ``generate`` is set; True when it
    generated, False when ``root`` exists; FileNotFoundError for any other missing root."""
    if Path(root).exists():
        return False
    if not (Path(os.path.abspath(root)) == Path(os.path.abspath(default_root)) or generate):
        raise FileNotFoundError(
            f"{name} root {str(root)!r} does not exist; the dataset is generated "
            f"automatically only at the default {default_root}/ (relative to the "
            f"working directory) or with data.generate=true")
    # imported here: the generator is only needed when the data is missing
    from clinfonce_plugin.data.synthetic_cub import generate_synthetic_cub

    print(f"[clinfonce] generating the {name} dataset at {root}")
    generate_synthetic_cub(root, **params)
    return True


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


def build_wider_attribute(root: Union[str, Path], split: Split,
                          transform: Optional[Callable] = None) -> Built:
    """WIDER Attribute from its official layout; root holds wider_attribute_annotation/ and
    Image/ (or the one folder inside it that does). Train = the trainval file (official
    train + val), test = the test file."""
    meta = read_wider(root)
    return (WiderImages(meta, split, transform), _noted(meta.sample_info(split), root, meta.root),
            meta.num_classes)


def build_utzappos(root: Union[str, Path], split: Split, transform: Optional[Callable] = None,
                   split_seed: Optional[int] = None) -> Built:
    """UT-Zappos50K from the official release; root holds ut-zap50k-images-square (or
    ut-zap50k-images) and ut-zap50k-data (or the one folder inside it that does). The 7:3
    train/test split is drawn with ``split_seed`` (data.split_seed)."""
    meta = read_utzappos(root)
    return (ZapposImages(meta, split, split_seed, transform),
            _noted(meta.sample_info(split, split_seed), root, meta.root), meta.num_classes)


def build_custom(root: Union[str, Path], split: Split, transform: Optional[Callable] = None,
                 annotations: Optional[str] = None, train_path: Optional[str] = None) -> Built:
    """The user's own image folder (class folders or flat) with an optional annotations CSV
    (``data.annotations``); see ``data/custom.py``. The test split is the CSV's ``test`` rows
    or the folder ``root`` (``data.val_path``); ``train_path`` is the training folder."""
    data = read_custom(root, split, annotations, train_path)
    return CustomImages(data, transform), data.sample_info(), data.num_classes


DATASETS: Dict[str, Callable[..., Built]] = {
    "cub": build_cub,
    "synthetic_cub": build_synthetic_cub,
    "synthetic_cub_bench": build_synthetic_cub_bench,
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    "wider_attribute": build_wider_attribute,
    "utzappos": build_utzappos,
    "custom": build_custom,
    "imagenet100": build_imagenet100,
    "imagenet": build_imagenet,
}

# The ``data.*`` keys (besides train_path) a reader takes, passed as keyword arguments by
# ``open_split``; their defaults live in ``config.PRETRAIN["data"]``, the one place.
DATASET_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "synthetic_cub": ("generate",),
    "synthetic_cub_bench": ("generate",),
    "utzappos": ("split_seed",),
    # train_path too: the test split is read with root = data.val_path, and the CSV's paths
    # and the training class names refer to the training folder
    "custom": ("annotations", "train_path"),
    "imagenet100": ("class_list",),
    "imagenet": ("class_list",),
}


def dataset_options(name: str, data_cfg) -> Dict[str, Any]:
    """The keyword arguments of dataset ``name``'s reader, read from ``data_cfg``."""
    return {key: data_cfg.get(key) for key in DATASET_OPTIONS.get(name, ())}


@dataclass
class OpenSplit:
    """One split of a configured dataset, read once: the (image, target) dataset, the
    SampleInfo of its rows and the class count."""
    dataset: Dataset
    info: SampleInfo
    num_classes: int


def open_split(data_cfg, split: Split, verify: bool = False,
               root: Optional[Union[str, Path]] = None) -> OpenSplit:
    """Reads ``split`` of the dataset configured by ``data_cfg`` (``dataset``, ``train_path``,
    ``generate``, ``verify_images``) once. Reader errors become DataError; with ``verify``
    the image files are checked too (see ``verify_split``)."""
    root = root if root is not None else data_cfg.train_path
    name = data_cfg.dataset
    try:
        built = build_dataset(name, root, split, **dataset_options(name, data_cfg))
    except (ValueError, FileNotFoundError, OSError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"data.dataset={name}: {err}") from None
    opened = OpenSplit(*built)
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        print(f"[clinfonce] {describe_split(opened, name, split)} (from {root})")
    if verify:
        verify_split(opened, data_cfg, f"{name} {split} split at {root}")
    return opened


def describe_split(opened: OpenSplit, name: str, split: Split) -> str:
    """One line with the counts a reader must report: images, classes, labelled images and
    attribute columns, e.g. ``cub train: 5994 images, 200 classes, 312 attributes``."""
    info = opened.info
    parts = [f"{info.num_samples} images", f"{opened.num_classes} classes"]
    if info.labels is not None and (info.labels < 0).any():
        parts.append(f"{int((info.labels >= 0).sum())} labelled")
    if info.attributes is not None:
        parts.append(f"{info.attributes.shape[1]} attributes")
    layout = info.extra.get("layout")  # how a reader interpreted the files, when it says
    return f"{name} {split}: " + ", ".join(parts) + (f" [{layout}]" if layout else "")


def require_labels(opened: OpenSplit, use: str, where: str, otherwise: str = "") -> None:
    """DataError unless every image of the split has a label: ``use`` (e.g. "linear
    evaluation") cannot run on images without one; ``otherwise`` ends the message with the
    alternative to labelling the data."""
    labels = opened.info.labels
    unknown = opened.info.num_samples if labels is None else int((labels < 0).sum())
    if unknown:
        what = ("has no labels" if unknown == opened.info.num_samples
                else f"has {unknown} of {opened.info.num_samples} images without a label")
        raise DataError(f"{use} needs a label for every image, but {where} {what}: "
                        f"{LABELS_HINT} (dataset custom){otherwise}")


def verify_split(opened: OpenSplit, data_cfg, where: str) -> None:
    """Checks every image file of the split when ``data.verify_images`` says so (true, or
    auto below AUTO_VERIFY_LIMIT files), listing all bad files at once."""
    files = getattr(opened.dataset, "files", None)
    if files is not None and should_verify(data_cfg.verify_images, len(files)):
        verify_images(files, where)


def build_dataset(name: str, root: Union[str, Path], split: Split,
                  transform: Optional[Callable] = None, **options: Any) -> Built:
    """(dataset of (image, target), SampleInfo of that split, num_classes) for a registered name.

    ``options`` are the reader's ``data.*`` keys (``DATASET_OPTIONS``). The dataset's index
    i and SampleInfo row i describe the same image.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}. Choose from {sorted(DATASETS)}")
    return DATASETS[name](root, split, transform, **options)


def training_sample_info(cfg, sample_info: Optional[SampleInfo] = None) -> SampleInfo:
    """The training split's SampleInfo: the one given (the runner reads the split once and
    passes it), or read from ``cfg.data``."""
    if sample_info is not None:
        return sample_info
    return open_split(cfg.data, "train").info
