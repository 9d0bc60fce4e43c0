"""Reader for an ImageNet folder: every class (``imagenet``, ImageNet-1K) or the classes of a
class list (``imagenet100``); nothing is downloaded, nothing is moved.

``root`` (``data.train_path`` / ``data.val_path``) is one of the layouts ImageNet
(ILSVRC-2012) is distributed in, read as it is::

    train/<wnid>/<wnid>_<n>.JPEG             the official train tarballs, one folder per wnid
    val/<wnid>/ILSVRC2012_val_<n>.JPEG       validation images sorted into wnid folders, or
    val/ILSVRC2012_val_<n>.JPEG              the official flat validation folder, labelled
                                             by LOC_val_solution.csv

or the Kaggle "ImageNet Object Localization Challenge" folder::

    ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<n>.JPEG
    ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_<n>.JPEG      flat
    LOC_val_solution.csv                                 beside ILSVRC/
    LOC_synset_mapping.txt                               beside ILSVRC/

``LOC_val_solution.csv`` has the header ``ImageId,PredictionString`` and one row per
validation image, e.g. ``ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 ...``
(boxes of five tokens); the label is the wnid of the first token. It is looked up in
``root``, in the folder holding ``train/`` and ``val/``, in the Kaggle folder when ``root``
is ``ILSVRC/Data/CLS-LOC`` itself, and in ``val/``. A flat ``val/`` without it is an error
naming the places looked in.

Class names: ``words.txt`` (``n00001740<TAB>entity``, every WordNet synset) and
``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``, the 1,000 classes), looked up
in the same places, give the readable name of a wnid (``SampleInfo.titles``); the class
identifiers stay the wnids, so a WordNet ``pairs_file`` places them in the hierarchy.

The class list (``data.class_list``) is a text file of wnids, whitespace separated (one per
line as in Cl-InfoNCE's ``selected_100_classes.txt``, or all on one line as in solo-learn's
``imagenet100_classes.txt``); ``#`` starts a comment; a BOM and CRLF line ends are accepted.
Labels follow the *sorted* wnids (torchvision's ImageFolder convention), whatever the order
of the file. Only folder listings are read (``os.scandir``, no image is opened): files
whose extension is ``.jpeg``, ``.jpg`` or ``.png`` (any case) count as images; hidden files
are skipped. Within a class, images are in file-name order in every layout.
"""
import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.images import ImageFiles

Split = Union[bool, str]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
LAYOUT = ("train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (or a flat val/ with "
          "LOC_val_solution.csv, or the Kaggle folder holding ILSVRC/Data/CLS-LOC/)")
KAGGLE_DATA = ("ILSVRC", "Data", "CLS-LOC")
VAL_SOLUTION = "LOC_val_solution.csv"
VAL_HEADER = ["ImageId", "PredictionString"]
SYNSET_MAPPING = "LOC_synset_mapping.txt"
WORDS = "words.txt"


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


def read_val_solution(path: Union[str, Path]) -> Dict[str, Tuple[str, int]]:
    """ImageId -> (wnid, line) of ``LOC_val_solution.csv``: the wnid is the first token of
    PredictionString. A BOM, CRLF line ends and blank lines are accepted.

    Raises:
        ValueError: another header, a row without two fields or without a wnid, an ImageId
            listed twice ("file:line: ...").
    """
    rows: Dict[str, Tuple[str, int]] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != VAL_HEADER:
            raise ValueError(f"{path}:1: expected the header {','.join(VAL_HEADER)!r} of the "
                             f"official {VAL_SOLUTION}, got {','.join(header or [])!r}")
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            tokens = row[1].split() if len(row) == 2 else []
            if not tokens or not row[0].strip():
                raise ValueError(f"{path}:{line}: expected 'ImageId,PredictionString' with "
                                 f"the wnid first (e.g. 'ILSVRC2012_val_00008726,n02119789 255 "
                                 f"142 454 329'), got {','.join(row)!r}")
            image_id = row[0].strip()
            if image_id in rows:
                raise ValueError(f"{path}:{line}: ImageId {image_id!r} is listed twice "
                                 f"(first at line {rows[image_id][1]})")
            rows[image_id] = (tokens[0], line)
    return rows


def read_synset_names(path: Union[str, Path]) -> Dict[str, str]:
    """wnid -> readable name of a ``words.txt`` (``n00001740<TAB>entity``) or
    ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``) file.

    Raises:
        ValueError: a non-blank line without a name after the wnid ("file:line: ...").
    """
    names: Dict[str, str] = {}
    with open(path, encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            parts = raw.strip().split(None, 1)
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{number}: expected '<wnid> <name>' (e.g. "
                                 f"'n01440764 tench, Tinca tinca'), got {raw.strip()!r}")
            names[parts[0]] = parts[1].strip()
    return names


@dataclass
class Layout:
    """Where one ImageNet root keeps its files.

    Attributes:
        root: the configured folder; paths are relative to it.
        data: the folder holding ``train/`` and ``val/`` (root, or root/ILSVRC/Data/CLS-LOC).
        meta_dirs: where LOC_val_solution.csv, LOC_synset_mapping.txt and words.txt are
            looked up, in order.
    """

    root: Path
    data: Path
    meta_dirs: List[Path]

    @property
    def prefix(self) -> str:
        """``data`` relative to ``root`` as a path prefix ("" or "ILSVRC/Data/CLS-LOC/")."""
        rel = self.data.relative_to(self.root).as_posix()
        return "" if rel == "." else rel + "/"

    def find(self, name: str, *more: Path) -> Optional[Path]:
        """The first ``name`` file among ``meta_dirs`` and ``more``, or None."""
        for folder in self.meta_dirs + list(more):
            if (folder / name).is_file():
                return folder / name
        return None


def find_layout(root: Path, name: str) -> Layout:
    """The layout of ``root``: its own ``train/``/``val/``, else the Kaggle tree under it.

    Raises:
        FileNotFoundError: root is not a directory.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{name} root {str(root)!r} is not a directory; expected "
                                f"the ImageNet folder holding {LAYOUT}")
    kaggle = root.joinpath(*KAGGLE_DATA)
    own = (root / "train").is_dir() or (root / "val").is_dir()
    data = kaggle if not own and kaggle.is_dir() else root
    dirs = [root, data]
    if data == root and root.parts[-3:] == KAGGLE_DATA:  # root is ILSVRC/Data/CLS-LOC itself
        dirs.append(root.parents[2])
    unique: List[Path] = []
    for folder in dirs:
        if folder not in unique:
            unique.append(folder)
    return Layout(root, data, unique)


def _split_dir(split: Split, name: str) -> str:
    if isinstance(split, (bool, np.bool_)):
        return "train" if split else "val"
    if split == "train":
        return "train"
    if split in ("test", "val"):
        return "val"
    raise ValueError(f"unknown {name} split {split!r}. Choose from ['test', 'train', "
                     f"'val'] or a bool")


def _resolve_class_list(class_list: Optional[str], root: Path, name: str) -> Path:
    if class_list is None:  # only imagenet100 requires one (imagenet reads every folder)
        raise ValueError(f"{name} needs data.class_list: a file of the wnids to keep, "
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


def _all_classes(train_dir: Path, name: str) -> List[Tuple[str, int]]:
    """Every class folder of ``train/`` as (wnid, 0) pairs (no file line to point at)."""
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{name}: {train_dir} is missing; expected the ImageNet "
                                f"folder layout {LAYOUT}")
    with os.scandir(train_dir) as entries:
        wnids = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not wnids:
        raise ValueError(f"{name}: {train_dir} holds no class folder (expected {LAYOUT})")
    return [(w, 0) for w in wnids]


@dataclass
class Listing:
    """One split of an ImageNet root.

    Attributes:
        paths: image paths relative to the root, grouped by label, by file name within one.
        labels: (N,) int64 positions of the images' wnids in ``wnids``.
        wnids: the classes, sorted.
        list_file: the class-list file (``train/`` when every class folder is a class).
        layout: the root's layout.
        note: how the files were read, for the split's log line ("" for class folders
            directly under root).
    """

    paths: List[str]
    labels: np.ndarray
    wnids: List[str]
    list_file: Path
    layout: Layout
    note: str


def _class_folders(split_dir: Path, rel: str, wnids: List[str], name: str
                   ) -> Tuple[List[str], List[int]]:
    paths: List[str] = []
    counts = []
    for wnid in wnids:
        names = _images_in(str(split_dir / wnid))
        if not names:
            raise ValueError(f"{name}: class folder {split_dir / wnid} holds no image "
                             f"(.JPEG/.jpg/.png)")
        paths.extend(f"{rel}/{wnid}/{file}" for file in names)
        counts.append(len(names))
    return paths, counts


def _flat_val(layout: Layout, split_dir: Path, files: List[str], listed: List[Tuple[str, int]],
              list_file: Path, every_class: bool, name: str) -> Tuple[List[str], List[int], Path]:
    """(paths, images per sorted wnid, csv) of a flat ``val/`` labelled by
    LOC_val_solution.csv. Rows of wnids outside the class list are skipped; with
    ``every_class`` (the classes are the folders of train/) such a row is an error."""
    wnids = sorted(w for w, _ in listed)
    rel = f"{layout.prefix}{split_dir.name}"
    solution_file = layout.find(VAL_SOLUTION, split_dir)
    if solution_file is None:
        places = ", ".join(f"{d}/" for d in layout.meta_dirs + [split_dir])
        raise ValueError(f"{name}: {split_dir} holds images directly (the official flat "
                         f"validation layout) but no {VAL_SOLUTION} labels them (looked in "
                         f"{places}); put the official {VAL_SOLUTION} (header "
                         f"{','.join(VAL_HEADER)}) beside val/, or sort the images into "
                         f"val/<wnid>/ folders")
    folders = [w for w in wnids if (split_dir / w).is_dir()]
    if folders:
        raise ValueError(f"{name}: {split_dir} holds images directly and class folders "
                         f"({folders[0]}/ ...); expected one of the two layouts, not both")
    solution = read_val_solution(solution_file)
    on_disk = {file.rsplit(".", 1)[0]: file for file in files}
    unlabelled = [file for stem, file in on_disk.items() if stem not in solution]
    if unlabelled:
        raise ValueError(f"{name}: {len(unlabelled)} image(s) of {split_dir} have no row in "
                         f"{solution_file}, e.g. {unlabelled[0]}; expected one "
                         f"'ImageId,PredictionString' row per validation image")
    position = {w: k for k, w in enumerate(wnids)}
    per_class: List[List[str]] = [[] for _ in wnids]
    for image_id, (wnid, line) in solution.items():
        if wnid not in position:
            if every_class:
                raise ValueError(f"{solution_file}:{line}: {image_id} is of class {wnid!r}, "
                                 f"which has no folder in {list_file}/")
            continue
        if image_id not in on_disk:
            raise ValueError(f"{solution_file}:{line}: {image_id} (class {wnid}) has no "
                             f"image in {split_dir}")
        per_class[position[wnid]].append(on_disk[image_id])
    for wnid, line in listed:
        if not per_class[position[wnid]]:
            where = f"{list_file}:{line}: class" if line else "train/ class"
            raise ValueError(f"{where} {wnid!r} has no validation image in {solution_file}")
    paths = [f"{rel}/{file}" for group in per_class for file in sorted(group)]
    return paths, [len(group) for group in per_class], solution_file


def read_listing(root: Union[str, Path], split: Split, class_list: Optional[str],
                 all_classes: bool = False, name: str = "imagenet100") -> Listing:
    """Lists one split of an ImageNet root (see the module docstring). With
    ``all_classes`` and no class list, the classes are every folder of ``train/``.
    ``name`` (the configured data.dataset) starts the error messages.

    Raises:
        ValueError: missing class list, a listed wnid without a folder in the split
            (``file:line``), an empty class folder, a flat ``val/`` without its
            LOC_val_solution.csv or with images the CSV does not label.
        FileNotFoundError: the root or the split folder is missing.
    """
    root = Path(root)
    sub = _split_dir(split, name)
    layout = find_layout(root, name)
    split_dir = layout.data / sub
    every_class = all_classes and class_list is None
    if every_class:
        list_file = layout.data / "train"
        listed = _all_classes(list_file, name)
    else:
        list_file = _resolve_class_list(class_list, root, name)
        listed = read_class_list(list_file)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{name}: {split_dir} is missing; expected the ImageNet "
                                f"folder layout {LAYOUT} under {root}")
    wnids = sorted(w for w, _ in listed)
    notes = ["Kaggle tree " + "/".join(KAGGLE_DATA)] if layout.prefix else []
    flat = _images_in(str(split_dir)) if sub == "val" else []
    if flat:
        paths, counts, solution_file = _flat_val(layout, split_dir, flat, listed, list_file,
                                                 every_class, name)
        notes.append(f"flat val/ labelled by {solution_file}")
    else:
        for wnid, line in listed:
            if not (split_dir / wnid).is_dir():
                where = f"{list_file}:{line}: class" if line else "train/ class"
                raise ValueError(f"{where} {wnid!r} has no folder {split_dir / wnid}"
                                 f" (expected {LAYOUT})")
        paths, counts = _class_folders(split_dir, f"{layout.prefix}{sub}", wnids, name)
    labels = np.repeat(np.arange(len(wnids), dtype=np.int64), counts)
    return Listing(paths, labels, wnids, list_file, layout, "; ".join(notes))


def list_imagenet(root: Union[str, Path], split: Split, class_list: Optional[str],
                  all_classes: bool = False, name: str = "imagenet100"
                  ) -> Tuple[List[str], np.ndarray, List[str], Path]:
    """``read_listing`` as (paths relative to root, labels, sorted wnids, class-list file)."""
    listing = read_listing(root, split, class_list, all_classes, name)
    return listing.paths, listing.labels, listing.wnids, listing.list_file


def read_titles(layout: Layout) -> Optional[Dict[str, str]]:
    """wnid -> readable name from words.txt, then LOC_synset_mapping.txt (which wins for
    the wnids both name), among the layout's metadata folders; None when neither is there."""
    titles: Dict[str, str] = {}
    found = False
    for file_name in (WORDS, SYNSET_MAPPING):
        path = layout.find(file_name)
        if path is not None:
            titles.update(read_synset_names(path))
            found = True
    return titles if found else None


class FolderImages(ImageFiles):
    """Images listed by path relative to ``root`` -> (PIL RGB image or transform(image),
    label); ``files`` are the absolute paths."""

    def __init__(self, root: Path, paths: List[str], labels: np.ndarray,
                 transform: Optional[Callable] = None) -> None:
        base = os.path.abspath(root)
        super().__init__([os.path.join(base, p) for p in paths], labels, transform)


def _build(root: Union[str, Path], split: Split, transform: Optional[Callable],
           class_list: Optional[str], all_classes: bool, name: str):
    listing = read_listing(root, split, class_list, all_classes, name)
    info = SampleInfo(num_samples=len(listing.paths), labels=listing.labels,
                      class_names=listing.wnids, paths=listing.paths, root=str(root),
                      titles=read_titles(listing.layout))
    if listing.note:
        info.extra["layout"] = listing.note
    return FolderImages(Path(root), listing.paths, listing.labels, transform), info, \
        len(listing.wnids)


def build_imagenet100(root: Union[str, Path], split: Split, transform: Optional[Callable] = None,
                      class_list: Optional[str] = None):
    """ImageNet restricted to the wnids of ``class_list`` (data.class_list; relative paths
    are tried from the working directory, then under root): the dataset, its SampleInfo
    (labels in sorted-wnid order, class names = wnids, titles from words.txt /
    LOC_synset_mapping.txt when present) and the number of classes."""
    return _build(root, split, transform, class_list, False, "imagenet100")


def build_imagenet(root: Union[str, Path], split: Split, transform: Optional[Callable] = None,
                   class_list: Optional[str] = None):
    """ImageNet-1K (every class folder of ``train/``, or the wnids of ``class_list`` when
    given): as ``build_imagenet100``, whose reader it is."""
    return _build(root, split, transform, class_list, True, "imagenet")
