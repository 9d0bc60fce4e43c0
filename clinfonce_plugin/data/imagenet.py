"""Reader for an ImageNet folder: every class (``imagenet``, ImageNet-1K) or the classes of a
class list (``imagenet100``); nothing is downloaded.

``root`` is the ImageNet (ILSVRC-2012) directory with one folder per class in each split::

    train/<wnid>/<image>.JPEG       the official train tarballs, one folder per wnid
    val/<wnid>/<image>.JPEG         the validation images sorted into wnid folders

The official validation tarball is flat (``val/ILSVRC2012_val_00000001.JPEG`` ...): it must
first be sorted into ``val/<wnid>/`` folders with the usual re-organisation script (the
``valprep.sh`` PyTorch's ImageNet example points to); a flat ``val/`` is an error that
says so.

The class list (``data.class_list``) is a text file of wnids, whitespace separated (one per
line as in Cl-InfoNCE's ``selected_100_classes.txt``, or all on one line as in solo-learn's
``imagenet100_classes.txt``); ``#`` starts a comment; a BOM and CRLF line ends are accepted.
Labels follow the *sorted* wnids (torchvision's ImageFolder convention), whatever the order
of the file, and the class names are the wnids, so a WordNet ``pairs_file`` places them in
the hierarchy. Only folder listings are read (``os.scandir``, no image is opened): files
whose extension is ``.jpeg``, ``.jpg`` or ``.png`` (any case) count as images; hidden files
are skipped.
"""
import os
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.images import ImageFiles

Split = Union[bool, str]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
LAYOUT = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG"


def read_class_list(path: Union[str, Path]) -> List[Tuple[str, int]]:
    """(wnid, line) of every name in a class-list file, in file order.

    Raises:
        ValueError: a duplicated name ("file:line: ... first at line ...") or no name.
    """
    names: List[Tuple[str, int]] = []
    first = {}
    with open(path, encoding="utf-8-sig") as handle:  # universal newlines: CRLF is fine
        for number, raw in enumerate(handle, start=1):
            for name in raw.split("#", 1)[0].split():
                if name in first:
                    raise ValueError(f"{path}:{number}: class {name!r} is listed twice "
                                     f"(first at line {first[name]})")
                first[name] = number
                names.append((name, number))
    if not names:
        raise ValueError(f"{path}: no class listed; expected wnids such as n01440764, "
                         f"one per line")
    return names


def _split_dir(split: Split) -> str:
    if isinstance(split, (bool, np.bool_)):
        return "train" if split else "val"
    if split == "train":
        return "train"
    if split in ("test", "val"):
        return "val"
    raise ValueError(f"unknown imagenet100 split {split!r}. Choose from ['test', 'train', "
                     f"'val'] or a bool")


def _resolve_class_list(class_list: Optional[str], root: Path) -> Path:
    if class_list is None:  # only imagenet100 requires one (imagenet reads every folder)
        raise ValueError("imagenet100 needs data.class_list: a file of the wnids to keep, "
                         "e.g. Cl-InfoNCE's selected_100_classes.txt or the CMC/solo-learn "
                         "ImageNet-100 list (see docs/datasets.md)")
    path = Path(os.path.expanduser(str(class_list)))
    candidates = [path] if path.is_absolute() else [path, root / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"data.class_list {str(class_list)!r} not found; looked in "
                            f"{[str(c.absolute()) for c in candidates]}")


def _images_in(folder: str) -> List[str]:
    """Sorted image file names of one class folder (one directory listing, no stat)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
                      and e.is_file())


def _all_classes(train_dir: Path) -> List[Tuple[str, int]]:
    """Every class folder of ``train/`` as (wnid, 0) pairs (no file line to point at)."""
    if not train_dir.is_dir():
        raise FileNotFoundError(f"imagenet: {train_dir} is missing; expected the ImageNet "
                                f"folder layout {LAYOUT}")
    with os.scandir(train_dir) as entries:
        wnids = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not wnids:
        raise ValueError(f"imagenet: {train_dir} holds no class folder (expected {LAYOUT})")
    return [(w, 0) for w in wnids]


def list_imagenet(root: Union[str, Path], split: Split, class_list: Optional[str],
                  all_classes: bool = False) -> Tuple[List[str], np.ndarray, List[str], Path]:
    """Lists one split: (paths relative to root, labels, sorted wnids, class-list file).
    With ``all_classes`` and no class list, the classes are every folder of ``train/`` (the
    returned file is then ``train/``).

    Raises:
        ValueError: missing class list, a listed wnid without a folder in the split
            (``file:line``), an empty class folder, a flat ``val/``.
        FileNotFoundError: the root or the split folder is missing.
    """
    root = Path(root)
    sub = _split_dir(split)
    split_dir = root / sub
    if not root.is_dir():
        raise FileNotFoundError(f"imagenet100 root {str(root)!r} is not a directory; expected "
                                f"the ImageNet folder holding {LAYOUT}")
    if all_classes and class_list is None:
        list_file = root / "train"
        listed = _all_classes(list_file)
    else:
        list_file = _resolve_class_list(class_list, root)
        listed = read_class_list(list_file)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"imagenet100: {split_dir} is missing; expected the ImageNet "
                                f"folder layout {LAYOUT} under {root}")
    if sub == "val" and _images_in(str(split_dir)):
        raise ValueError(f"imagenet100: {split_dir} holds images directly (the official flat "
                         f"validation layout); sort them into val/<wnid>/ folders with the usual "
                         f"ImageNet validation re-organisation script first (expected {LAYOUT})")
    for wnid, line in listed:
        if not (split_dir / wnid).is_dir():
            where = f"{list_file}:{line}: class" if line else "train/ class"
            raise ValueError(f"{where} {wnid!r} has no folder {split_dir / wnid}"
                             f" (expected {LAYOUT})")
    wnids = sorted(w for w, _ in listed)
    paths: List[str] = []
    counts = []
    for wnid in wnids:
        names = _images_in(str(split_dir / wnid))
        if not names:
            raise ValueError(f"imagenet100: class folder {split_dir / wnid} holds no image "
                             f"(.JPEG/.jpg/.png)")
        paths.extend(f"{sub}/{wnid}/{name}" for name in names)
        counts.append(len(names))
    labels = np.repeat(np.arange(len(wnids), dtype=np.int64), counts)
    return paths, labels, wnids, list_file


class FolderImages(ImageFiles):
    """Images listed by path relative to ``root`` -> (PIL RGB image or transform(image),
    label); ``files`` are the absolute paths."""

    def __init__(self, root: Path, paths: List[str], labels: np.ndarray,
                 transform: Optional[Callable] = None) -> None:
        base = os.path.abspath(root)
        super().__init__([os.path.join(base, p) for p in paths], labels, transform)


def build_imagenet100(root: Union[str, Path], split: Split, transform: Optional[Callable] = None,
                      class_list: Optional[str] = None):
    """ImageNet restricted to the wnids of ``class_list`` (data.class_list; relative paths
    are tried from the working directory, then under root): the dataset, its SampleInfo
    (labels in sorted-wnid order, class names = wnids) and the number of classes."""
    paths, labels, wnids, _ = list_imagenet(root, split, class_list)
    info = SampleInfo(num_samples=len(paths), labels=labels, class_names=wnids, paths=paths,
                      root=str(root))
    return FolderImages(Path(root), paths, labels, transform), info, len(wnids)


def build_imagenet(root: Union[str, Path], split: Split, transform: Optional[Callable] = None,
                   class_list: Optional[str] = None):
    """ImageNet-1K (every class folder of ``train/``, or the wnids of ``class_list`` when
    given): as ``build_imagenet100``, whose reader it is."""
    paths, labels, wnids, _ = list_imagenet(root, split, class_list, all_classes=True)
    info = SampleInfo(num_samples=len(paths), labels=labels, class_names=wnids, paths=paths,
                      root=str(root))
    return FolderImages(Path(root), paths, labels, transform), info, len(wnids)
