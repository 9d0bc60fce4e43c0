"""Readers for the official CIFAR-10 / CIFAR-100 python-pickle layout
(https://www.cs.toronto.edu/~kriz/cifar.html); nothing is downloaded.

``root`` is the extracted directory of the official tarball, or the directory containing it::

    cifar-10-batches-py/                    cifar-100-python/
        data_batch_1 .. data_batch_5            train
        test_batch                              test
        batches.meta                            meta

Every batch file is a pickle (protocol 2, written by Python 2: read with
``encoding="bytes"``) of a dict with ``b"data"``: (n, 3072) uint8, each row the 1024 red,
then 1024 green, then 1024 blue values of a 32x32 image in row-major order, and
``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` + ``b"coarse_labels"`` (CIFAR-100).
``batches.meta`` holds ``b"label_names"``; ``meta`` holds ``b"fine_label_names"`` and
``b"coarse_label_names"``.
"""
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from clinfonce_plugin.clusters.sample_info import SampleInfo

Split = Union[bool, str]

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"
CIFAR100_DIR = "cifar-100-python"
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)
CIFAR100_META = "meta"


@dataclass
class CifarData:
    """One split of CIFAR in memory.

    Attributes:
        root: the cifar-10-batches-py / cifar-100-python directory.
        images: (N, 32, 32, 3) uint8, HWC.
        labels: (N,) int64 class index (fine labels for CIFAR-100).
        class_names: class index -> name.
        paths: "<batch file>/<row>" of each image ("data_batch_1/0", ...), the key of
            precomputed cluster files.
        coarse_labels: (N,) int64 superclass of CIFAR-100, else None.
        coarse_names: superclass index -> name (CIFAR-100), else None.
    """

    root: Path
    images: np.ndarray
    labels: np.ndarray
    class_names: List[str]
    paths: List[str]
    coarse_labels: Optional[np.ndarray] = None
    coarse_names: Optional[List[str]] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def hierarchy(self) -> Optional[List[Tuple[str, str]]]:
        """(superclass name, class name) of every class present in the split (CIFAR-100),
        sorted; None for CIFAR-10. A class seen under two superclasses is an error."""
        if self.coarse_labels is None:
            return None
        pairs = np.unique(np.stack([self.coarse_labels, self.labels], axis=1), axis=0)
        fine, counts = np.unique(pairs[:, 1], return_counts=True)
        if (counts > 1).any():
            bad = int(fine[np.argmax(counts > 1)])
            supers = [self.coarse_names[c] for c in pairs[pairs[:, 1] == bad, 0]]
            raise ValueError(f"{self.root}: class {self.class_names[bad]!r} has images in "
                             f"several superclasses {supers}; each CIFAR-100 class belongs "
                             f"to one superclass")
        return [(self.coarse_names[c], self.class_names[f]) for c, f in pairs.tolist()]

    def sample_info(self) -> SampleInfo:
        extra: Dict[str, Any] = {}
        if self.coarse_labels is not None:
            extra = {"coarse_labels": self.coarse_labels, "coarse_names": self.coarse_names}
        return SampleInfo(num_samples=len(self.labels), labels=self.labels,
                          class_names=list(self.class_names), paths=list(self.paths),
                          root=str(self.root), hierarchy=self.hierarchy(), extra=extra)


def _resolve_root(root: Union[str, Path], folder: str, files: Sequence[str]) -> Path:
    """``root`` itself when it holds the files, else ``root/folder`` when that exists."""
    root = Path(root)
    if not (root / files[0]).exists() and (root / folder).is_dir():
        root = root / folder
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{root} is not a {folder} directory of the official python-pickle release: "
            f"missing {missing} (expected {list(files)}); extract the official tarball "
            f"(nothing is downloaded)")
    return root


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: the official CIFAR batches need
    nothing else, and a crafted file cannot name a function to run."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # bytes in protocol-2 pickles: str.encode only

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays "
                                         f"and plain containers are read)")
        return super().find_class(module, name)


def _load(path: Path) -> Dict[bytes, Any]:
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a CIFAR python pickle ({type(err).__name__}: {err})"
                         ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _field(obj: Dict[bytes, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # files re-pickled by Python 3 may have str keys
        if k in obj:
            return obj[k]
    raise ValueError(f"{path}: missing key {key!r} (has {sorted(map(str, obj))})")


def _names(values: Sequence[Any]) -> List[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read_batches(root: Path, files: Sequence[str], label_keys: Sequence[str]
                  ) -> Tuple[np.ndarray, List[np.ndarray], List[str]]:
    images, labels, paths = [], [[] for _ in label_keys], []
    for name in files:
        path = root / name
        obj = _load(path)
        data = np.asarray(_field(obj, "data", path))
        if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
            raise ValueError(f"{path}: 'data' must be a (n, 3072) uint8 array, got "
                             f"{data.shape} {data.dtype}")
        for out, key in zip(labels, label_keys):
            values = np.asarray(_field(obj, key, path), dtype=np.int64)
            if values.shape != (data.shape[0],):
                raise ValueError(f"{path}: {key!r} has {values.size} entries for "
                                 f"{data.shape[0]} images")
            out.append(values)
        # rows are R(1024) G(1024) B(1024), each 32x32 row-major -> HWC
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        paths.extend(f"{name}/{row}" for row in range(data.shape[0]))
    return (np.ascontiguousarray(np.concatenate(images)),
            [np.concatenate(v) for v in labels], paths)


def _check_labels(labels: np.ndarray, num: int, what: str, root: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num):
        raise ValueError(f"{root}: {what} must lie in [0, {num}) (the names in the meta "
                         f"file), got [{labels.min()}, {labels.max()}]")


def _is_train(split: Split) -> bool:
    if isinstance(split, (bool, np.bool_)):
        return bool(split)
    if split == "train":
        return True
    if split in ("test", "val"):
        return False
    raise ValueError(f"unknown CIFAR split {split!r}. Choose from ['test', 'train', 'val'] "
                     f"or a bool")


def read_cifar10(root: Union[str, Path], split: Split = "train") -> CifarData:
    """CIFAR-10 train (data_batch_1..5, 50,000 images) or test (test_batch, 10,000)."""
    train = _is_train(split)
    files = CIFAR10_TRAIN if train else CIFAR10_TEST
    root = _resolve_root(root, CIFAR10_DIR, (*files, CIFAR10_META))
    meta_path = root / CIFAR10_META
    names = _names(_field(_load(meta_path), "label_names", meta_path))
    images, (labels,), paths = _read_batches(root, files, ["labels"])
    _check_labels(labels, len(names), "labels", root)
    return CifarData(root, images, labels, names, paths)


def read_cifar100(root: Union[str, Path], split: Split = "train") -> CifarData:
    """CIFAR-100 train (50,000 images) or test (10,000); labels are the 100 fine classes,
    the 20 superclasses are kept as ``coarse_labels``."""
    train = _is_train(split)
    files = CIFAR100_TRAIN if train else CIFAR100_TEST
    root = _resolve_root(root, CIFAR100_DIR, (*files, CIFAR100_META))
    meta_path = root / CIFAR100_META
    meta = _load(meta_path)
    fine = _names(_field(meta, "fine_label_names", meta_path))
    coarse = _names(_field(meta, "coarse_label_names", meta_path))
    images, (labels, coarse_labels), paths = _read_batches(
        root, files, ["fine_labels", "coarse_labels"])
    _check_labels(labels, len(fine), "fine_labels", root)
    _check_labels(coarse_labels, len(coarse), "coarse_labels", root)
    return CifarData(root, images, labels, fine, paths, coarse_labels, coarse)


class CifarImages(Dataset):
    """CIFAR images of one split -> (PIL RGB image or transform(image), label)."""

    def __init__(self, data: CifarData, transform: Optional[Callable] = None) -> None:
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {type(transform).__name__}")
        self.data = data
        self.transform = transform
        self.targets = data.labels

    def __len__(self) -> int:
        return len(self.data.labels)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.data.images[i])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.data.labels[i])
