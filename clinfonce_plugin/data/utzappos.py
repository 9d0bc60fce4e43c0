"""Reader for the official UT-Zappos50K release (Yu & Grauman, CVPR 2014,
https://vision.cs.utexas.edu/projects/finegrained/utzap50k/), as used by Cl-InfoNCE
(https://arxiv.org/abs/2202.06670, App. E.1); nothing is downloaded.

``root`` (``data.train_path``) is the directory holding the unzipped release, or a folder
whose only sub-folder holding it is the top folder an archive added (``data/roots.py``)::

    ut-zap50k-images-square/<Category>/<SubCategory>/<Brand>/<product>.<colour>.jpg
    ut-zap50k-images/...           same tree, original (non-square) images; used when the
                                   square folder is absent
    ut-zap50k-data/meta-data.csv   CID,Category,SubCategory,HeelHeight,Insole,Closure,
                                   Gender,Material,ToeStyle  (one row per image; CID is
                                   "<product>-<colour>"; Insole, Closure, Gender, Material
                                   and ToeStyle may hold several values separated by ';';
                                   an empty field is an unknown value)
    ut-zap50k-data/meta-data-bin.csv  optional: CID plus one 0/1 column per value, named
                                   "<Attribute>.<value>" with every non-alphanumeric
                                   character written as '.' (R's make.names)

Rows are ordered by the numeric (product, colour) pair of their CID, the order of the
indices in the Cl-InfoNCE preprocessed files. Labels are the 21 sub-categories (class names
are the SubCategory values, classes sorted by (Category, SubCategory)). Attributes are the
paper's 7: every meta-data.csv column but CID and the label SubCategory, each multi-hot
binarised (one 0/1 column ``<Attribute>::<value>`` per value seen in the whole file,
values sorted; an empty field sets none of its attribute's columns). meta-data-bin.csv,
when present, is only a cross-check: every one of its columns that names one of those
values must agree with meta-data.csv.

The train/test split is the paper's random 7:3 split made deterministic:
``RandomState(split_seed).permutation(N)``, the first ``int(0.7 * N)`` rows train. Seed 0
is the Cl-InfoNCE split itself (35,017 / 15,008 of 50,025; see docs/datasets.md).
Images are rescaled to 32x32 when loaded (a non-square image is first padded to a square
on white, the background of every UT-Zappos50K image).
"""
import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.images import ImageFiles, load_rgb
from clinfonce_plugin.data.roots import dataset_folder

Split = Union[bool, str]

DATA_DIR = "ut-zap50k-data"
META = f"{DATA_DIR}/meta-data.csv"
META_BIN = f"{DATA_DIR}/meta-data-bin.csv"
# Image folders in order of preference: the official Cl-InfoNCE code reads the square one.
IMAGE_DIRS = ("ut-zap50k-images-square", "ut-zap50k-images")
CATEGORIES = ("Boots", "Sandals", "Shoes", "Slippers")  # the top folders of the image tree
CID = "CID"
CATEGORY = "Category"
LABEL = "SubCategory"
ATTRIBUTES = ("Category", "HeelHeight", "Insole", "Closure", "Gender", "Material", "ToeStyle")
COLUMNS = (CID, CATEGORY, LABEL) + ATTRIBUTES[1:]
MULTI_SEPARATOR = ";"
TRAIN_FRACTION = 0.7
IMAGE_SIZE = 32
_CID = re.compile(r"^([0-9]+)-([0-9]+)$")


def split_rows(num_rows: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices of the random 7:3 split.

    ``RandomState(seed).permutation(num_rows)``: the first ``int(0.7 * num_rows)`` entries
    are train, the rest test, in permutation order. The legacy RandomState stream is frozen
    by numpy's compatibility policy (NEP 19), so a seed gives the same split with every
    numpy version; seed 0 on the 50,025 rows is the split of the official Cl-InfoNCE files.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"data.split_seed must be a non-negative integer, got {seed!r}")
    order = np.random.RandomState(int(seed)).permutation(num_rows).astype(np.int64)
    cut = int(TRAIN_FRACTION * num_rows)
    return order[:cut], order[cut:]


@dataclass
class ZapposMetadata:
    """Everything the release says about its images, rows in numeric CID order.

    Attributes:
        root: the directory holding ``ut-zap50k-data`` and the image folder.
        image_dir: the image folder used (one of IMAGE_DIRS).
        cids: N CIDs, e.g. "7403685-255".
        paths: N image paths relative to root, e.g.
            "ut-zap50k-images-square/Shoes/Oxfords/Bostonian/7403685.255.jpg".
        labels: (N,) int64 class index.
        class_names: C SubCategory values, classes sorted by (Category, SubCategory).
        categories: N Category values.
        attributes: (N, B) uint8 multi-hot attribute table.
        attribute_names: B names ``<Attribute>::<value>``.
        lines: (N,) line of each row in meta-data.csv.
        bin_checked: names of the meta-data-bin.csv columns compared with ``attributes``
            (empty when the file is absent).
        bin_ignored: meta-data-bin.csv columns of the 7 attributes that name no value of
            meta-data.csv (not compared).
    """

    root: Path
    image_dir: str
    cids: List[str]
    paths: List[str]
    labels: np.ndarray
    class_names: List[str]
    categories: List[str]
    attributes: np.ndarray
    attribute_names: List[str]
    lines: np.ndarray
    bin_checked: List[str] = field(default_factory=list)
    bin_ignored: List[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return len(self.cids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, split: Split, split_seed: int) -> np.ndarray:
        """Row indices of a split: True/"train", False/"test" (alias "val") or "all"."""
        if isinstance(split, (bool, np.bool_)):
            split = "train" if split else "test"
        if split == "all":
            return np.arange(self.num_samples, dtype=np.int64)
        if split not in ("train", "test", "val"):
            raise ValueError(f"unknown UT-Zappos50K split {split!r}. "
                             f"Choose from ['all', 'test', 'train', 'val'] or a bool")
        train, test = split_rows(self.num_samples, split_seed)
        return train if split == "train" else test

    def sample_info(self, split: Split, split_seed: int) -> SampleInfo:
        """SampleInfo of one split, indexed like ``ZapposImages(self, split, split_seed)``."""
        idx = self.indices(split, split_seed)
        if len(idx) == 0:
            raise ValueError(f"UT-Zappos50K split {split!r} of {self.root} has no images "
                             f"({self.num_samples} rows in {self.root / META})")
        return SampleInfo(
            num_samples=len(idx),
            labels=self.labels[idx],
            class_names=list(self.class_names),
            attributes=self.attributes[idx],
            attribute_names=list(self.attribute_names),
            paths=[self.paths[i] for i in idx],
            root=str(self.root),
            extra={"cids": [self.cids[i] for i in idx],
                   "categories": [self.categories[i] for i in idx],
                   "image_dir": self.image_dir},
        )


def _csv_rows(path: Path) -> Iterator[Tuple[int, List[str]]]:
    """(line, fields) of every non-blank row; a BOM and CRLF line ends are accepted."""
    lineno = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                lineno = reader.line_num
                if row and any(value.strip() for value in row):
                    yield lineno, [value.strip() for value in row]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}:{lineno + 1}: not UTF-8 text ({err.reason}); "
                         f"expected the official comma-separated file") from None
    except csv.Error as err:
        raise ValueError(f"{path}:{lineno + 1}: malformed CSV ({err})") from None


def _fields_error(path: Path, line: int, header: Sequence[str], row: Sequence[str]) -> ValueError:
    return ValueError(f"{path}:{line}: expected {len(header)} comma-separated fields "
                      f"({','.join(header)}), got {len(row)}: {','.join(row)!r}")


def _cid_key(cid: str) -> Optional[Tuple[int, int]]:
    match = _CID.match(cid)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def _holds_zappos(folder: Path) -> bool:
    """The folder holds part of the release: ut-zap50k-data/ or an image folder."""
    return any((folder / name).is_dir() for name in (DATA_DIR,) + IMAGE_DIRS)


def _image_dir(root: Path) -> str:
    """The image folder under root, or FileNotFoundError naming what was expected."""
    expected = (f"expected {root}/{DATA_DIR}/meta-data.csv and an image folder "
                f"{root}/{IMAGE_DIRS[0]}/ (or {IMAGE_DIRS[1]}/) as unzipped from the "
                f"official release; data.train_path is the directory that holds both")
    if not root.is_dir():
        raise FileNotFoundError(f"UT-Zappos50K root {str(root)!r} is not a directory: "
                                f"{expected}")
    found = [name for name in IMAGE_DIRS if (root / name).is_dir()]
    missing = [] if (root / META).is_file() else [META]
    if not found:
        missing.append(f"{IMAGE_DIRS[0]}/ or {IMAGE_DIRS[1]}/")
    if missing:
        hint = ""
        if any((root / c).is_dir() for c in CATEGORIES):
            hint = (f" ({root} looks like an image folder itself: set data.train_path to "
                    f"the directory that contains it and {DATA_DIR}/)")
        raise FileNotFoundError(f"UT-Zappos50K files missing under {root}: "
                                f"{', '.join(missing)}; {expected}{hint}")
    return found[0]


def _index_images(folder: Path) -> Dict[str, List[str]]:
    """file name -> paths (relative to folder's parent) of every .jpg in the tree."""
    index: Dict[str, List[str]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder.parent).as_posix()
        for name in filenames:
            if name.lower().endswith(".jpg"):
                index.setdefault(name, []).append(f"{rel}/{name}")
    return index


@dataclass
class _Row:
    line: int
    cid: str
    key: Tuple[int, int]
    category: str
    label: str
    values: Dict[str, List[str]]


def _split_cell(cell: str, cache: Dict[str, List[str]]) -> List[str]:
    """The values of a (possibly multi-valued) field; cells repeat, so each is split once."""
    values = cache.get(cell)
    if values is None:
        values = cache[cell] = [v.strip() for v in cell.split(MULTI_SEPARATOR) if v.strip()]
    return values


def _read_meta(path: Path) -> List[_Row]:
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{path}: empty file, expected the header {','.join(COLUMNS)}")
    line, header = first
    if sorted(header) != sorted(COLUMNS):
        raise ValueError(f"{path}:{line}: expected the header {','.join(COLUMNS)} (any "
                         f"order), got {','.join(header)}")
    at = {name: header.index(name) for name in COLUMNS}
    attribute_at = [(name, at[name]) for name in ATTRIBUTES]
    cid_at, category_at, label_at = at[CID], at[CATEGORY], at[LABEL]
    cells: Dict[str, List[str]] = {}
    out: List[_Row] = []
    seen: Dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise _fields_error(path, line, header, row)
        cid = row[cid_at]
        key = _cid_key(cid)
        if key is None:
            raise _bad_field(path, line, header, row, CID,
                             "must be '<product id>-<colour id>' (its image is "
                             "<product id>.<colour id>.jpg)")
        if cid in seen:
            raise ValueError(f"{path}:{line}: CID {cid} already given on line {seen[cid]}")
        seen[cid] = line
        for column in (category_at, label_at):
            if not row[column] or MULTI_SEPARATOR in row[column]:
                raise _bad_field(path, line, header, row, header[column],
                                 "must hold exactly one value")
        values = {name: _split_cell(row[j], cells) for name, j in attribute_at}
        out.append(_Row(line, cid, key, row[category_at], row[label_at], values))
    if not out:
        raise ValueError(f"{path}: no rows after the header")
    return out


def _bad_field(path: Path, line: int, header: List[str], row: List[str], column: str,
               why: str) -> ValueError:
    j = header.index(column)
    return ValueError(f"{path}:{line}:{j + 1}: column {column} {why}, got {row[j]!r}")


def _bin_key(name: str) -> str:
    """A column name with every non-alphanumeric character as '.', like R's make.names."""
    return re.sub(r"[^0-9A-Za-z]", ".", name)


def _check_bin(path: Path, meta: ZapposMetadata) -> None:
    """Compares meta-data-bin.csv with the attribute table; fills bin_checked/bin_ignored."""
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{path}: empty file, expected a header CID,<Attribute>.<value>,...")
    line, header = first
    if not header or header[0] != CID:
        raise ValueError(f"{path}:{line}: expected the first column {CID}, got {header[:1]}")
    ours: Dict[str, List[int]] = {}
    for j, name in enumerate(meta.attribute_names):
        attribute, value = name.split("::", 1)
        ours.setdefault(_bin_key(f"{attribute}.{value}"), []).append(j)
    compared: List[Tuple[int, int]] = []  # (bin column, our column)
    for k, name in enumerate(header[1:], start=1):
        if name.split(".", 1)[0] not in ATTRIBUTES:
            continue  # SubCategory (the label) and anything else
        columns = ours.get(_bin_key(name), [])
        if len(columns) == 1:
            compared.append((k, columns[0]))
            meta.bin_checked.append(name)
        else:  # no such value, or values that differ only in punctuation
            meta.bin_ignored.append(name)
    if not compared:
        raise ValueError(
            f"{path}:{line}: no column names a value of meta-data.csv (expected names like "
            f"'Material.Leather' for the attributes {', '.join(ATTRIBUTES)}); move the "
            f"file away to read meta-data.csv alone")
    row_of = {cid: i for i, cid in enumerate(meta.cids)}
    keep = [k for k, _ in compared]
    seen: Dict[str, int] = {}
    lines: List[int] = []
    targets: List[int] = []
    cells: List[List[str]] = []
    for line, row in rows:
        if len(row) != len(header):
            raise _fields_error(path, line, header, row)
        cid = row[0]
        if cid not in row_of:
            raise ValueError(f"{path}:{line}:1: CID {cid!r} is not in {meta.root / META}")
        if cid in seen:
            raise ValueError(f"{path}:{line}: CID {cid} already given on line {seen[cid]}")
        seen[cid] = line
        lines.append(line)
        targets.append(row_of[cid])
        cells.append([row[k] for k in keep])
    if len(seen) != len(row_of):
        absent = next(cid for cid in meta.cids if cid not in seen)
        raise ValueError(f"{path}: no row for CID {absent} ({meta.root / META}:"
                         f"{meta.lines[row_of[absent]]}); expected one row per image")
    # compared as whole arrays: ~50,000 rows x ~130 columns is too many for a Python loop
    values = np.array(cells, dtype=str)
    ones = values == "1"
    bad = ~(ones | (values == "0"))
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(f"{path}:{lines[r]}:{keep[c] + 1}: column {header[keep[c]]} must be "
                         f"0 or 1, got {str(values[r, c])!r}")
    expected = meta.attributes[np.asarray(targets)][:, [j for _, j in compared]]
    differ = ones.astype(np.uint8) != expected
    if differ.any():
        r, c = (int(x) for x in np.argwhere(differ)[0])
        (k, j), i = compared[c], targets[r]
        raise ValueError(
            f"{path}:{lines[r]}:{k + 1}: column {header[k]} is {values[r, c]} but "
            f"{meta.root / META}:{meta.lines[i]} gives {meta.attributes[i, j]} for "
            f"{meta.attribute_names[j]} of CID {meta.cids[i]}")


def read_utzappos(root: Union[str, Path]) -> ZapposMetadata:
    """Reads meta-data.csv, finds every image, and cross-checks meta-data-bin.csv when
    present (no image is decoded).

    Raises:
        FileNotFoundError: meta-data.csv or the image folder is missing (naming the layout).
        ValueError: a malformed row, an image missing or in another sub-category's folder,
            or meta-data-bin.csv disagreeing ("file:line[:column]: ...").
    """
    root = dataset_folder(Path(root), _holds_zappos, "UT-Zappos50K")
    image_dir = _image_dir(root)
    meta_path = root / META
    rows = sorted(_read_meta(meta_path), key=lambda r: r.key)

    images = _index_images(root / image_dir)
    paths: List[str] = []
    absent: List[_Row] = []
    for row in rows:
        name = f"{row.key[0]}.{row.key[1]}.jpg"
        found = images.get(name, [])
        if len(found) > 1:
            raise ValueError(f"{meta_path}:{row.line}: CID {row.cid} has several images "
                             f"{name}: {found}")
        if not found:
            absent.append(row)
            continue
        parts = found[0].split("/")
        if parts[1:3] != [row.category, row.label]:
            raise ValueError(
                f"{meta_path}:{row.line}: CID {row.cid} is {row.category}/{row.label} but its "
                f"image is {root / found[0]}; expected "
                f"{image_dir}/{row.category}/{row.label}/<Brand>/{name}")
        paths.append(found[0])
    if absent:
        first = absent[0]
        raise FileNotFoundError(
            f"{meta_path}:{first.line}: no image for CID {first.cid} (expected "
            f"{root / image_dir}/{first.category}/{first.label}/<Brand>/"
            f"{first.key[0]}.{first.key[1]}.jpg); {len(absent)} of {len(rows)} rows have "
            f"no image")

    category_of: Dict[str, Tuple[str, int]] = {}
    for row in rows:
        known = category_of.setdefault(row.label, (row.category, row.line))
        if known[0] != row.category:
            raise ValueError(f"{meta_path}:{row.line}: SubCategory {row.label!r} is under "
                             f"Category {row.category!r} here but {known[0]!r} on line "
                             f"{known[1]}")
    class_names = sorted(category_of, key=lambda label: (category_of[label][0], label))
    class_index = {name: i for i, name in enumerate(class_names)}

    seen_values: Dict[str, set] = {attribute: set() for attribute in ATTRIBUTES}
    for row in rows:
        for attribute in ATTRIBUTES:
            seen_values[attribute].update(row.values[attribute])
    attribute_names: List[str] = []
    column: Dict[Tuple[str, str], int] = {}
    for attribute in ATTRIBUTES:
        for v in sorted(seen_values[attribute]):
            column[attribute, v] = len(attribute_names)
            attribute_names.append(f"{attribute}::{v}")
    ones_rows: List[int] = []
    ones_cols: List[int] = []
    for i, row in enumerate(rows):
        for attribute in ATTRIBUTES:
            for v in row.values[attribute]:
                ones_rows.append(i)
                ones_cols.append(column[attribute, v])
    table = np.zeros((len(rows), len(attribute_names)), dtype=np.uint8)
    table[ones_rows, ones_cols] = 1

    meta = ZapposMetadata(
        root=root, image_dir=image_dir, cids=[r.cid for r in rows], paths=paths,
        labels=np.array([class_index[r.label] for r in rows], dtype=np.int64),
        class_names=class_names, categories=[r.category for r in rows],
        attributes=table, attribute_names=attribute_names,
        lines=np.array([r.line for r in rows], dtype=np.int64))
    if (root / META_BIN).is_file():
        _check_bin(root / META_BIN, meta)
    return meta


def rescale(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """The image padded to a square on white (centred) and resized to size x size."""
    width, height = image.size
    if width != height:
        side = max(width, height)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - width) // 2, (side - height) // 2))
        image = square
    if image.size != (size, size):
        # bilinear with Pillow's antialiasing: what torchvision's Resize does to a PIL image
        image = image.resize((size, size), Image.BILINEAR)
    return image


class ZapposImages(ImageFiles):
    """UT-Zappos50K images of one split -> (32x32 PIL RGB image or transform(image), label).

    Index i of this dataset is ``meta.indices(split, split_seed)[i]``, the order of
    ``meta.sample_info(split, split_seed)``.
    """

    def __init__(self, meta: ZapposMetadata, split: Split, split_seed: int,
                 transform: Optional[Callable] = None) -> None:
        indices = meta.indices(split, split_seed)
        super().__init__([meta.root / meta.paths[i] for i in indices], meta.labels[indices],
                         transform)
        self.meta = meta
        self.indices = indices

    def load(self, i: int):
        return rescale(load_rgb(self.files[i]))
