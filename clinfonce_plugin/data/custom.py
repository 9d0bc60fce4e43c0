"""Reader for the user's own images (``data.dataset=custom``), after solo-learn's custom
convention: ``data.train_path`` (the root) is an image folder, either

    root/<class>/<image>     class folders (torchvision's ImageFolder): the class of an image
                             is its top folder, classes sorted by name, images anywhere below
                             their class folder
    root/<image>             flat: no labels (label -1 everywhere)

Image files are those with torchvision's ``IMG_EXTENSIONS`` (any case); files and folders
whose name starts with ``.`` are skipped; files are listed in sorted order (the order of
torchvision's ImageFolder), so the dataset index of an image is deterministic. A root
holding both images and folders of images is an error naming it.

Optional ``data.annotations``: a CSV file (comma separated, UTF-8 with or without a BOM,
LF or CRLF line ends; a relative name is looked up under the root, then the working
directory) with a header line and one line per image:

    path     required; the image file relative to the root (every listed file must exist,
             must stay inside the root, and be listed once)
    label    optional; class name (classes = the sorted distinct names). Overrides folders;
             without it, a path ``<class>/...`` takes its class from its top folder, and
             paths at the top of the root have no labels
    split    optional; ``train`` or ``test`` (the test split of linear evaluation and of the
             online probe); without it every listed image is a training image
    <other>  attribute columns, each binarised by its values over all rows:
             binary       every value 0 or 1 -> one column named <column>
             categorical  any other values -> one 0/1 column per value, named
                          <column>::<value> (like CUB's ``has_bill_shape::curved``)
             multi-valued a cell holds values separated by ``;`` (any cell of the column
                          does) -> one 0/1 column per value, 1 for each value of the cell

Values are stripped of surrounding spaces; value columns are ordered by value (numerically
when every value is an integer). An empty ``path``, ``label``, ``split`` or attribute cell
is an error; blank lines are skipped. With an annotations file only the listed images are
used.

The test split: the CSV's ``test`` rows when it has a ``split`` column (paths under the
train root; ``data.val_path`` may then only repeat ``data.train_path``), else the folder
``data.val_path`` read with the same layout rules, its class folders indexed by the
training class names.

Errors are ValueError / FileNotFoundError naming ``file:line`` (and the column) and what
was expected.
"""
import csv
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.images import ImageFiles

Split = Union[bool, str]

# torchvision.datasets.folder.IMG_EXTENSIONS (a test keeps them equal)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
PATH, LABEL, SPLIT = "path", "label", "split"
SPLIT_VALUES = ("train", "test")
MULTI_SEPARATOR = ";"
VALUE_SEPARATOR = "::"  # <column>::<value>, as CUB's attribute names
# one byte per image and binary column: an identifier or free-text column (a value per image)
# would need images^2 bytes, so a column is refused above this many cells (1 GiB)
MAX_BINARY_CELLS = 2 ** 30
LABELS_HINT = ("put the images in class folders (<root>/<class>/<image>) or add a 'label' "
               "column to data.annotations")
LAYOUTS = "either <root>/<class>/<image> (class folders) or <root>/<image> (flat, no labels)"


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def split_kind(split: Split) -> str:
    """"train", "test" or "all" for a split argument (True/False, "val" = "test")."""
    if isinstance(split, (bool, np.bool_)):
        return "train" if split else "test"
    if split in ("train", "test", "all"):
        return split
    if split == "val":
        return "test"
    raise ValueError(f"unknown custom split {split!r}. Choose from ['all', 'test', 'train', "
                     f"'val'] or a bool")


# ----------------------------------------------------------------------------- folders
@dataclass
class FolderListing:
    """The images of a folder: paths relative to it (sorted), and for class folders the
    class of each image and the sorted class names (None for a flat folder)."""
    root: Path
    paths: List[str]
    classes: Optional[List[str]] = None
    class_of: Optional[List[str]] = None


def _visible(entries) -> list:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _images_below(folder: Path, stop_at_first: bool = False) -> List[str]:
    """Image paths below ``folder``, relative to it, in ImageFolder order (folders sorted by
    path, files sorted within each); with ``stop_at_first``, one image found or none."""
    found = []
    walk = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prunes the walk
        images = [name for name in filenames if is_image_name(name)]
        if stop_at_first and images:  # any image will do: no need to walk the rest
            return [os.path.relpath(os.path.join(dirpath, images[0]), folder)]
        walk.append((dirpath, images))
    for dirpath, images in sorted(walk):
        rel = os.path.relpath(dirpath, folder)
        found += [name if rel == "." else f"{Path(rel).as_posix()}/{name}"
                  for name in sorted(images)]
    return found


def _check_dir(root: Path, what: str) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"{what} {str(root)!r} is not a directory; expected an image "
                                f"folder, {LAYOUTS}")


def top_level(root: Path, what: str) -> Tuple[List[str], List[str]]:
    """(image file names, folder names) at the top of ``root``, hidden entries skipped."""
    _check_dir(root, what)
    with os.scandir(root) as it:
        entries = _visible(it)
    images = [e.name for e in entries if e.is_file() and is_image_name(e.name)]
    folders = [e.name for e in entries if e.is_dir()]
    return images, folders


def list_folder(root: Union[str, Path], what: str = "data.train_path") -> FolderListing:
    """Every image of ``root``: class folders or a flat folder (see the module docstring)."""
    root = Path(root)
    images, folders = top_level(root, what)
    if images:
        mixed = [f for f in folders if _images_below(root / f, stop_at_first=True)]
        if mixed:
            raise ValueError(
                f"{what} {str(root)!r} mixes {len(images)} image file(s) (e.g. {images[0]!r}) "
                f"with {len(mixed)} folder(s) of images (e.g. {mixed[0]!r}); expected "
                f"{LAYOUTS}")
        return FolderListing(root, images)
    if not folders:
        raise FileNotFoundError(f"{what} {str(root)!r} holds no image (extensions "
                                f"{', '.join(IMG_EXTENSIONS)}); expected {LAYOUTS}")
    paths, class_of = [], []
    for name in folders:
        below = _images_below(root / name)
        if not below:
            raise FileNotFoundError(
                f"{what} {str(root)!r}: class folder {name!r} holds no image (extensions "
                f"{', '.join(IMG_EXTENSIONS)}); expected {LAYOUTS}")
        paths += [f"{name}/{p}" for p in below]
        class_of += [name] * len(below)
    return FolderListing(root, paths, folders, class_of)


def folder_classes(root: Path, what: str) -> Optional[List[str]]:
    """The class names of ``root`` (its folders) from its top level only, None if flat."""
    images, folders = top_level(root, what)
    return None if images or not folders else folders


# ----------------------------------------------------------------------------- the CSV
@dataclass
class Annotations:
    """The rows of an annotations CSV, in file order.

    Attributes:
        file: the CSV path.
        lines: (R,) line number of each row.
        paths: R normalised paths relative to the root.
        labels: R class names, or None without a ``label`` column.
        splits: R of "train"/"test", or None without a ``split`` column.
        attributes: (R, B) uint8 binarised attribute table, or None without attribute columns.
        attribute_names: B names.
        columns: one description per attribute column, e.g. "color (categorical, 3 values)".
    """
    file: str
    lines: List[int]
    paths: List[str]
    labels: Optional[List[str]] = None
    splits: Optional[List[str]] = None
    attributes: Optional[np.ndarray] = None
    attribute_names: List[str] = field(default_factory=list)
    columns: List[str] = field(default_factory=list)


def _cell_error(file: str, line: int, column: str, what: str, expected: str) -> ValueError:
    return ValueError(f"{file}:{line}: column {column!r}: {what}, expected {expected}")


def _value_order(values) -> List[str]:
    values = set(values)
    if all(re.fullmatch(r"[+-]?\d+", v) for v in values):
        return sorted(values, key=lambda v: (int(v), v))
    return sorted(values)


def _rows(file: str):
    """(line number, stripped cells) of every row that is not blank."""
    try:
        with open(file, "r", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            try:
                for row in reader:
                    cells = [c.strip() for c in row]
                    if any(cells):  # a blank line, or one of empty fields (",,,")
                        yield reader.line_num, cells
            except csv.Error as err:
                raise ValueError(f"{file}:{reader.line_num}: not valid CSV ({err}); expected "
                                 f"comma-separated fields") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start}); save "
                         f"the file as UTF-8") from None


def _check_header(file: str, line: int, header: List[str]) -> None:
    for i, name in enumerate(header):
        if not name:
            raise ValueError(f"{file}:{line}: column {i + 1} of the header has no name; "
                             f"expected a name for every column")
        if name in header[:i]:
            raise ValueError(f"{file}:{line}: column {name!r} appears twice in the header; "
                             f"expected distinct column names")
    if PATH not in header:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
            hint = " (fields must be separated by commas)"
        raise ValueError(f"{file}:{line}: no column 'path' in the header {header}{hint}; "
                         f"expected a header line with a 'path' column and optional 'label', "
                         f"'split' and attribute columns")


def _checked_path(file: str, line: int, cell: str, root: Path, seen: Dict[str, int]) -> str:
    expected = f"an image file relative to data.train_path {str(root)!r}"
    if not cell:
        raise _cell_error(file, line, PATH, "empty", expected)
    if cell.startswith(("/", "\\")) or os.path.isabs(cell):
        raise _cell_error(file, line, PATH, f"{cell!r} is an absolute path", expected)
    norm = posixpath.normpath(cell)
    if norm in (".", "..") or norm.startswith("../"):
        raise _cell_error(file, line, PATH, f"{cell!r} leads outside the root", expected)
    if norm in seen:
        raise _cell_error(file, line, PATH, f"{cell!r} is listed a second time (first at "
                          f"line {seen[norm]})", "each image once")
    if not (root / norm).is_file():
        what = "is a folder" if (root / norm).is_dir() else "does not exist"
        raise _cell_error(file, line, PATH, f"{str(root / norm)!r} {what}", expected)
    seen[norm] = line
    return norm


def _binarise(file: str, name: str, cells: List[str], lines: List[int]
              ) -> Tuple[List[str], List[np.ndarray], str]:
    """(column names, 0/1 columns, description) of one attribute column."""
    if any(MULTI_SEPARATOR in c for c in cells):
        sets = []
        for cell, line in zip(cells, lines):
            parts = [p.strip() for p in cell.split(MULTI_SEPARATOR)]
            if not all(parts):
                raise _cell_error(file, line, name, f"empty value in {cell!r}",
                                  f"values separated by {MULTI_SEPARATOR!r}")
            sets.append(set(parts))
        values = _value_order(set().union(*sets))
        _check_size(file, name, len(values), len(cells))
        columns = [np.array([v in s for s in sets]) for v in values]
        kind = "multi-valued"
    elif set(cells) <= {"0", "1"}:
        return [name], [np.array([c == "1" for c in cells])], f"{name} (binary)"
    else:
        values = _value_order(cells)
        _check_size(file, name, len(values), len(cells))
        columns = [np.array([c == v for c in cells]) for v in values]
        kind = "categorical"
    names = [f"{name}{VALUE_SEPARATOR}{v}" for v in values]
    return names, columns, f"{name} ({kind}, {len(values)} values)"


def _check_size(file: str, name: str, num_values: int, num_rows: int) -> None:
    if num_values * num_rows > MAX_BINARY_CELLS:
        raise ValueError(f"{file}: column {name!r}: {num_values} distinct values over {num_rows} "
                         f"rows would make {num_values} binary columns "
                         f"({num_values * num_rows / 2 ** 30:.1f} GiB); expected an attribute "
                         f"with few values (an identifier or free text is not one: remove the "
                         f"column)")


def read_annotations(file: Union[str, Path], root: Union[str, Path]) -> Annotations:
    """Reads and checks an annotations CSV whose paths are relative to ``root``."""
    file, root = str(file), Path(root)
    rows = _rows(file)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{file}: empty; expected a header line with a 'path' column and "
                         f"one line per image")
    header_line, header = first
    _check_header(file, header_line, header)
    attr_columns = [c for c in header if c not in (PATH, LABEL, SPLIT)]
    index = {c: i for i, c in enumerate(header)}
    lines: List[int] = []
    paths: List[str] = []
    labels: List[str] = []
    splits: List[str] = []
    cells: Dict[str, List[str]] = {c: [] for c in attr_columns}
    seen: Dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise ValueError(f"{file}:{line}: {len(row)} fields, expected {len(header)} (the "
                             f"header's columns {header})")
        paths.append(_checked_path(file, line, row[index[PATH]], root, seen))
        if LABEL in index:
            label = row[index[LABEL]]
            if not label:
                raise _cell_error(file, line, LABEL, "empty", "a class name (leave the column "
                                  "out for images without labels)")
            labels.append(label)
        if SPLIT in index:
            value = row[index[SPLIT]]
            if value not in SPLIT_VALUES:
                raise _cell_error(file, line, SPLIT, f"{value!r}", "'train' or 'test'")
            splits.append(value)
        for column in attr_columns:
            value = row[index[column]]
            if not value:
                raise _cell_error(file, line, column, "empty", "a value (0/1, a category, "
                                  f"or values separated by {MULTI_SEPARATOR!r})")
            cells[column].append(value)
        lines.append(line)
    if not lines:
        raise ValueError(f"{file}:{header_line}: a header and no image line; expected one "
                         f"line per image after the header")
    out = Annotations(file, lines, paths, labels if LABEL in index else None,
                      splits if SPLIT in index else None)
    if attr_columns:
        columns: List[np.ndarray] = []
        for column in attr_columns:
            names, values, description = _binarise(file, column, cells[column], lines)
            out.attribute_names += names
            columns += values
            out.columns.append(description)
        seen_names: set = set()
        for n in out.attribute_names:
            if n in seen_names:
                raise ValueError(f"{file}:{header_line}: the binarised attribute {n!r} comes "
                                 f"from two columns; expected distinct names")
            seen_names.add(n)
        out.attributes = np.stack(columns, axis=1).astype(np.uint8)
    return out


def _classes_from_paths(ann: Annotations, root: Path) -> Tuple[Optional[List[str]], List[str]]:
    """Without a label column: (class names, class of each row) from the paths' top folders,
    or (None, []) when every path is at the top of the root."""
    tops = [p.split("/", 1)[0] if "/" in p else None for p in ann.paths]
    nested = [t is not None for t in tops]
    if not any(nested):
        return None, []
    if not all(nested):
        odd = nested.index(not nested[0])
        raise _cell_error(
            ann.file, ann.lines[odd], PATH,
            f"{ann.paths[odd]!r} is {'in' if nested[odd] else 'not in'} a class folder while "
            f"line {ann.lines[0]}'s {ann.paths[0]!r} is {'in' if nested[0] else 'not in'} one",
            f"every path as <class>/<image> (labels from folders) or every path at the top of "
            f"{str(root)!r} (no labels), or a 'label' column")
    return sorted(set(tops)), tops


# ----------------------------------------------------------------------------- one split
@dataclass
class CustomSplit:
    """One split: paths relative to ``root``, labels (-1 unknown), the training class names
    (None without labels), the binarised attributes and a one-line description."""
    root: Path
    paths: List[str]
    labels: np.ndarray
    class_names: Optional[List[str]]
    attributes: Optional[np.ndarray] = None
    attribute_names: Optional[List[str]] = None
    layout: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def sample_info(self) -> SampleInfo:
        if not self.paths:
            raise ValueError(f"the custom split at {str(self.root)!r} has no images")
        return SampleInfo(num_samples=len(self.paths), labels=self.labels,
                          class_names=None if self.class_names is None else list(self.class_names),
                          attributes=self.attributes,
                          attribute_names=None if self.attribute_names is None
                          else list(self.attribute_names),
                          paths=list(self.paths), root=str(self.root),
                          extra={"layout": self.layout})


def _index(names: Sequence[str], classes: Optional[List[str]]) -> np.ndarray:
    if classes is None:
        return np.full(len(names), -1, dtype=np.int64)
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[n] for n in names], dtype=np.int64)


def _same_dir(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def resolve_annotations(annotations: Union[str, Path], root: Path) -> str:
    """The CSV file: absolute as given; relative under the root first, then the cwd."""
    path = os.path.expanduser(str(annotations))
    candidates = [path] if os.path.isabs(path) else [str(root / path), path]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"data.annotations {str(annotations)!r} not found; looked in "
                            f"{[os.path.abspath(c) for c in candidates]}")


def _no_test_split(train_root: Path, csv_file: Optional[str]) -> ValueError:
    where = (f"data.annotations {csv_file!r} has no 'split' column" if csv_file
             else "no data.annotations with a 'split' column is given")
    return ValueError(f"no test split for {str(train_root)!r}: data.val_path is not set (or "
                      f"equals data.train_path) and {where}; set data.val_path to a test "
                      f"folder ({LAYOUTS}) or add a 'split' column (train/test) to "
                      f"data.annotations")


def _read_test_folder(root: Path, classes: Optional[List[str]], classes_from: str) -> CustomSplit:
    """The ``data.val_path`` folder, its class folders indexed by the training classes."""
    listing = list_folder(root, "data.val_path")
    if listing.classes is None:
        return CustomSplit(root, listing.paths, np.full(len(listing.paths), -1, np.int64),
                           classes, layout="flat test folder, no labels")
    unknown = [c for c in listing.classes if c not in (classes or [])]
    if unknown:
        shown = (classes or [])[:10]
        raise ValueError(
            f"data.val_path {str(root)!r}: class folder {unknown[0]!r} is not a training class "
            f"({classes_from}: {len(classes or [])} classes {shown}"
            f"{' ...' if len(classes or []) > 10 else ''}); expected the test classes to be "
            f"training classes")
    return CustomSplit(root, listing.paths, _index(listing.class_of, classes), classes,
                       layout=f"test folder with {len(listing.classes)} class folders")


def read_custom(root: Union[str, Path], split: Split = "train",
                annotations: Optional[Union[str, Path]] = None,
                train_path: Optional[Union[str, Path]] = None) -> CustomSplit:
    """Reads one split of the user's data (see the module docstring).

    Args:
        root: the folder the split is read from: ``data.train_path`` for the training split,
            ``data.val_path`` (or ``data.train_path`` when unset) for the test split.
        split: "train"/True, "test"/"val"/False, or "all" (every image under the root).
        annotations: ``data.annotations``, the optional CSV.
        train_path: ``data.train_path``: the training folder, needed for the test split
            (the CSV's paths and the training class names refer to it); default ``root``.
    """
    kind = split_kind(split)
    root = Path(root)
    train_root = root if kind != "test" or train_path is None else Path(train_path)
    csv_file = resolve_annotations(annotations, train_root) if annotations else None
    separate_test = kind == "test" and not _same_dir(root, train_root)
    if separate_test:
        _check_dir(root, "data.val_path")

    if csv_file is not None:
        _check_dir(train_root, "data.train_path")
        ann = read_annotations(csv_file, train_root)
        if ann.labels is not None:
            classes = sorted(set(ann.labels))
            row_classes: Sequence[str] = ann.labels
            source = f"column 'label' of {csv_file}"
        else:
            classes, row_classes = _classes_from_paths(ann, train_root)
            source = f"the class folders of the paths in {csv_file}"
        if kind == "test":
            if ann.splits is not None and separate_test:
                raise ValueError(
                    f"data.val_path {str(root)!r} is set, but data.annotations {csv_file!r} has "
                    f"a 'split' column: the test images are its 'test' rows under "
                    f"data.train_path {str(train_root)!r}; set data.val_path to data.train_path "
                    f"(or leave it unset) or remove the 'split' column")
            if ann.splits is None:
                if not separate_test:
                    raise _no_test_split(train_root, csv_file)
                return _read_test_folder(root, classes, source)
        wanted = (np.ones(len(ann.paths), bool) if kind == "all" or ann.splits is None
                  else np.array([s == kind for s in ann.splits]))
        if not wanted.any():
            raise ValueError(f"{csv_file}: no row has split {kind!r}; expected at least one "
                             f"'{kind}' image in column 'split'")
        rows = np.flatnonzero(wanted)
        labels = (_index([row_classes[i] for i in rows], classes) if classes is not None
                  else np.full(len(rows), -1, np.int64))
        labels_from = ("column 'label'" if ann.labels is not None
                       else "class folders" if classes is not None else None)
        describe = [f"annotations {csv_file}",
                    f"labels from {labels_from}" if labels_from else "no labels"]
        if ann.splits is not None:
            describe.append(f"split from column 'split' ({kind} rows)")
        if ann.attributes is not None:
            describe.append(f"attributes {', '.join(ann.columns)} -> "
                            f"{len(ann.attribute_names)} binary")
        return CustomSplit(train_root, [ann.paths[i] for i in rows], labels, classes,
                           None if ann.attributes is None else ann.attributes[rows],
                           None if ann.attributes is None else list(ann.attribute_names),
                           layout="; ".join(describe))

    if kind == "test":
        if not separate_test:
            raise _no_test_split(train_root, None)
        classes = folder_classes(train_root, "data.train_path")
        return _read_test_folder(root, classes, f"the class folders of {str(train_root)!r}")
    listing = list_folder(train_root, "data.train_path")
    if listing.classes is None:
        return CustomSplit(train_root, listing.paths,
                           np.full(len(listing.paths), -1, np.int64), None,
                           layout="flat folder, no labels")
    return CustomSplit(train_root, listing.paths, _index(listing.class_of, listing.classes),
                       listing.classes, layout=f"{len(listing.classes)} class folders")


class CustomImages(ImageFiles):
    """The images of a CustomSplit -> (PIL RGB image or transform(image), label or -1)."""

    def __init__(self, data: CustomSplit, transform: Optional[Callable] = None) -> None:
        super().__init__([data.root / p for p in data.paths], data.labels, transform)
