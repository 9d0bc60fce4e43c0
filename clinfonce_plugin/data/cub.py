"""Reader for the official CUB-200-2011 on-disk layout
(https://www.vision.caltech.edu/datasets/cub_200_2011/).

``root`` is the ``CUB_200_2011`` directory of the official tarball, or the folder the
tarball was extracted into (holding ``CUB_200_2011/`` and ``attributes.txt``): a root without
``images.txt`` is read from its ``CUB_200_2011/`` (``data/roots.py``)::

    images.txt                 <image_id> <image_name>          image_name relative to images/
    image_class_labels.txt     <image_id> <class_id>            class_id 1-based
    train_test_split.txt       <image_id> <is_training_image>   1 = train, 0 = test
    classes.txt                <class_id> <class_name>
    images/<class_dir>/<file>.jpg
    attributes/image_attribute_labels.txt
                               <image_id> <attribute_id> <is_present> <certainty_id> <time>
    attributes/certainties.txt <certainty_id> <certainty_name>  (optional; names contain spaces)
    attributes.txt             <attribute_id> <attribute_name>
                               e.g. "1 has_bill_shape::curved_(up_or_down)"

``attributes.txt`` sits *beside* ``CUB_200_2011`` in the official tarball; some copies move
it inside ``root`` or ``root/attributes``. It is looked up in ``root/attributes.txt``,
``root/attributes/attributes.txt``, ``root/../attributes.txt``, in that order.

Known defect of the real ``image_attribute_labels.txt`` (3,677,856 lines = 11,788 images x
312 attributes): a handful of lines carry more than the documented five fields (pandas
fails with "Expected 5 fields in line ..., saw 6"; parsers that skip bad lines silently lose
those annotations). The extra value sits after the certainty id; the four integer fields
are intact in every line, which is why the widely used parsers read ``line.split()[:4]``.
We do the same: the first four fields are parsed and validated, anything after them (the
``time`` field and the stray extra value) is ignored. A line with fewer than four fields or
a non-integer in them is an error naming the file and line.

Speed: the attribute file is tokenized by numpy's C parser (``np.loadtxt`` with
``usecols``; C code since numpy 1.23) and validated with vectorised numpy; lines are
re-scanned in Python only when something is wrong, to point at the first bad line
(measured times: ``docs/datasets.md``).
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.images import ImageFiles
from clinfonce_plugin.data.roots import dataset_folder

Split = Union[bool, str]

ROOT_NAME = "CUB_200_2011"  # the tarball's top folder
IMAGES = "images.txt"
CLASS_LABELS = "image_class_labels.txt"
TRAIN_TEST = "train_test_split.txt"
CLASSES = "classes.txt"
IMAGE_DIR = "images"
ATTRIBUTE_LABELS = "attributes/image_attribute_labels.txt"
CERTAINTIES = "attributes/certainties.txt"
# Search order for attributes.txt, relative to root.
ATTRIBUTE_NAME_CANDIDATES = ("attributes.txt", "attributes/attributes.txt", "../attributes.txt")
# Certainty ids of the official certainties.txt:
# 1 not visible, 2 guessing, 3 probably, 4 definitely.
DEFAULT_CERTAINTY_IDS = (1, 2, 3, 4)

_FORMATS = {
    IMAGES: "<image_id> <image_name>",
    CLASS_LABELS: "<image_id> <class_id>",
    TRAIN_TEST: "<image_id> <is_training_image>",
    CLASSES: "<class_id> <class_name>",
    "attributes.txt": "<attribute_id> <attribute_name>",
    CERTAINTIES: "<certainty_id> <certainty_name>",
    ATTRIBUTE_LABELS: "<image_id> <attribute_id> <is_present> <certainty_id> <time>",
}


@dataclass
class CubMetadata:
    """Everything CUB-200-2011 says about its images, in images.txt order (index 0..N-1).

    Attributes:
        root: the CUB_200_2011 directory.
        image_ids: (N,) int64 official image ids.
        paths: N image paths relative to root, e.g. "images/001.Black_footed_Albatross/x.jpg".
        labels: (N,) int64 0-based class index (position of the class in classes.txt).
        is_train: (N,) bool official train/test split.
        class_names: C class names from classes.txt, e.g. "001.Black_footed_Albatross".
        attribute_names: A names from attributes.txt (None when attributes were not read).
        attributes: (N, A) uint8 annotated is_present (None when not read).
        certainties: (N, A) uint8 certainty id per annotation (None when not read).
        attributes_file: where attributes.txt was found.
    """

    root: Path
    image_ids: np.ndarray
    paths: List[str]
    labels: np.ndarray
    is_train: np.ndarray
    class_names: List[str]
    attribute_names: Optional[List[str]] = None
    attributes: Optional[np.ndarray] = None
    certainties: Optional[np.ndarray] = None
    attributes_file: Optional[Path] = None
    certainty_names: Dict[int, str] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, train: bool) -> np.ndarray:
        """(M,) int64 indices of the official train (True) or test (False) images."""
        return np.flatnonzero(self.is_train == bool(train)).astype(np.int64)

    def indices(self, split: Split) -> np.ndarray:
        """Indices for a split: True/"train", False/"test" (alias "val": CUB has no
        validation split, evaluation uses the test images) or "all"."""
        if isinstance(split, (bool, np.bool_)):
            return self.split(bool(split))
        if split == "train":
            return self.split(True)
        if split in ("test", "val"):
            return self.split(False)
        if split == "all":
            return np.arange(self.num_samples, dtype=np.int64)
        raise ValueError(
            f"unknown CUB split {split!r}. Choose from ['all', 'test', 'train', 'val'] or a bool"
        )

    def sample_info(self, split: Split = "all") -> SampleInfo:
        """SampleInfo of one split, indexed like ``CubImages(self, split)``."""
        idx = self.indices(split)
        if len(idx) == 0:
            raise ValueError(f"CUB split {split!r} of {self.root} has no images")
        extra = {"image_ids": self.image_ids[idx], "is_train": self.is_train[idx]}
        if self.certainties is not None:
            extra["certainties"] = self.certainties[idx]
        return SampleInfo(
            num_samples=len(idx),
            labels=self.labels[idx],
            class_names=list(self.class_names),
            attributes=None if self.attributes is None else self.attributes[idx],
            attribute_names=None if self.attribute_names is None else list(self.attribute_names),
            paths=[self.paths[i] for i in idx],
            root=str(self.root),
            extra=extra,
        )


def _lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(1-based line number, stripped text) of every non-blank line."""
    with open(path, "r", encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if text:
                yield lineno, text


def _is_uint(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _malformed(path: Path, lineno: int, text: str, fmt: str) -> ValueError:
    return ValueError(f"{path}:{lineno}: expected '{fmt}', got '{text}'")


def _read_table(path: Path, fmt: str, int_fields: int, rest: bool) -> List[Tuple[int, list]]:
    """Rows of a small whitespace-separated file as (lineno, fields).

    The first ``int_fields`` fields must be non-negative integers; ``rest`` means one more
    field that takes the remainder of the line (names with spaces), else exactly one more
    string field when fmt has more fields than int_fields.
    """
    n_fields = len(fmt.split())
    rows = []
    for lineno, text in _lines(path):
        parts = text.split(None, n_fields - 1) if rest else text.split()
        if len(parts) != n_fields or not all(_is_uint(p) for p in parts[:int_fields]):
            raise _malformed(path, lineno, text, fmt)
        rows.append((lineno, [int(p) for p in parts[:int_fields]] + parts[int_fields:]))
    if not rows:
        raise ValueError(f"{path}: file is empty, expected lines '{fmt}'")
    return rows


def _id_table(path: Path, fmt: str, rest: bool = False) -> Dict[int, Tuple[int, str]]:
    """{id: (lineno, value)} of an '<id> <value>' file, rejecting duplicate ids."""
    table: Dict[int, Tuple[int, str]] = {}
    for lineno, (key, value) in _read_table(path, fmt, 1, rest):
        if key in table:
            raise ValueError(f"{path}:{lineno}: duplicate id {key} (first at line {table[key][0]})")
        table[key] = (lineno, value)
    return table


def _image_values(path: Path, fmt: str, image_line: Dict[int, int], images_path: Path
                  ) -> Dict[int, Tuple[int, int]]:
    """{image_id: (lineno, value)} of an '<image_id> <int>' file, checked against images.txt."""
    table: Dict[int, Tuple[int, int]] = {}
    for lineno, (image_id, value) in _read_table(path, fmt, 2, rest=False):
        if image_id not in image_line:
            raise ValueError(f"{path}:{lineno}: image id {image_id} is not listed in {images_path}")
        if image_id in table:
            first = table[image_id][0]
            raise ValueError(
                f"{path}:{lineno}: duplicate image id {image_id} (first at line {first})")
        table[image_id] = (lineno, value)
    for image_id, lineno in image_line.items():
        if image_id not in table:
            raise ValueError(
                f"{path}: no line for image id {image_id} ({images_path}:{lineno}); "
                f"expected one '{fmt}' line per image"
            )
    return table


def find_attribute_names_file(root: Union[str, Path]) -> Optional[Path]:
    """First existing attributes.txt among ATTRIBUTE_NAME_CANDIDATES, or None."""
    root = Path(root)
    for rel in ATTRIBUTE_NAME_CANDIDATES:
        candidate = root / rel
        if candidate.is_file():
            return candidate
    return None


def _holds_cub(folder: Path) -> bool:
    """The folder is a CUB root: it has images.txt or is the tarball's CUB_200_2011/."""
    return (folder / IMAGES).is_file() or folder.name == ROOT_NAME


def _check_files(root: Path, with_attributes: bool) -> Optional[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"CUB-200-2011 root {str(root)!r} is not a directory")
    required = [IMAGES, CLASS_LABELS, TRAIN_TEST, CLASSES]
    if with_attributes:
        required.append(ATTRIBUTE_LABELS)
    missing = [rel for rel in required if not (root / rel).is_file()]
    names_file = find_attribute_names_file(root) if with_attributes else None
    if with_attributes and names_file is None:
        missing.append(" or ".join(ATTRIBUTE_NAME_CANDIDATES))
    if missing:
        raise FileNotFoundError(
            f"CUB-200-2011 files missing under root {str(root)!r}: {', '.join(missing)}. "
            f"Expected the official layout: {', '.join(required)} and attributes.txt, in "
            f"root or in root/CUB_200_2011/"
        )
    return names_file


def _first_bad_attribute_line(path: Path) -> Optional[Tuple[int, str]]:
    for lineno, text in _lines(path):
        parts = text.split()
        if len(parts) < 4 or not all(_is_uint(p) for p in parts[:4]):
            return lineno, text
    return None


def _data_line(path: Path, row: int) -> Tuple[int, str]:
    """(lineno, text) of the row-th (0-based) non-blank line: maps loadtxt rows to lines."""
    for i, (lineno, text) in enumerate(_lines(path)):
        if i == row:
            return lineno, text
    raise IndexError(row)


def _read_attribute_labels(path: Path, image_index: np.ndarray, attribute_index: np.ndarray,
                           certainty_ids: Sequence[int], num_images: int, image_ids: np.ndarray
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """(N, A) is_present and certainty arrays from image_attribute_labels.txt.

    image_index / attribute_index: lookup tables official id -> row / column, -1 elsewhere.
    """
    fmt = _FORMATS[ATTRIBUTE_LABELS]
    try:
        table = np.loadtxt(path, usecols=(0, 1, 2, 3), dtype=np.int64, ndmin=2, comments=None,
                           encoding="utf-8-sig")
    except ValueError as err:
        bad = _first_bad_attribute_line(path)
        if bad is not None:
            raise _malformed(path, bad[0], bad[1], fmt) from None
        raise ValueError(f"{path}: could not parse as '{fmt}': {err}") from err
    if table.shape[0] == 0:
        raise ValueError(f"{path}: file is empty, expected lines '{fmt}'")
    img, att, present, certainty = table.T

    def fail(bad_rows: np.ndarray, why: str) -> ValueError:
        lineno, text = _data_line(path, int(np.flatnonzero(bad_rows)[0]))
        return ValueError(f"{path}:{lineno}: {why}, got '{text}'")

    def lookup(ids: np.ndarray, index: np.ndarray) -> np.ndarray:
        out = index[np.clip(ids, 0, len(index) - 1)]
        out[(ids < 0) | (ids >= len(index))] = -1
        return out

    rows = lookup(img, image_index)
    if (rows < 0).any():
        raise fail(rows < 0, f"image id not listed in {IMAGES}")
    cols = lookup(att, attribute_index)
    if (cols < 0).any():
        raise fail(cols < 0, f"attribute id out of range (not in attributes.txt, "
                             f"{int((attribute_index >= 0).sum())} attributes)")
    if ((present != 0) & (present != 1)).any():
        raise fail((present != 0) & (present != 1), "is_present must be 0 or 1")
    valid_certainty = np.isin(certainty, np.asarray(certainty_ids))
    if not valid_certainty.all():
        raise fail(~valid_certainty, f"certainty_id must be one of {sorted(certainty_ids)}")

    num_attributes = int((attribute_index >= 0).sum())
    key = rows * num_attributes + cols
    counts = np.bincount(key, minlength=num_images * num_attributes)
    if (counts > 1).any():
        order = np.argsort(key, kind="stable")
        repeats = order[1:][key[order][1:] == key[order][:-1]]
        first_repeat = np.zeros(len(key), dtype=bool)
        first_repeat[repeats.min()] = True
        raise fail(first_repeat, "duplicate (image_id, attribute_id) pair")
    if (counts == 0).any():
        missing = int(np.flatnonzero(counts == 0)[0])
        image_row, column = divmod(missing, num_attributes)
        attribute_id = int(np.flatnonzero(attribute_index == column)[0])
        raise ValueError(
            f"{path}: no line for image id {int(image_ids[image_row])} and attribute id "
            f"{attribute_id}; expected one '{fmt}' line per image and attribute"
        )
    attributes = np.zeros((num_images, num_attributes), dtype=np.uint8)
    certainties = np.zeros((num_images, num_attributes), dtype=np.uint8)
    attributes[rows, cols] = present
    certainties[rows, cols] = certainty
    return attributes, certainties


def _index_table(ids: Sequence[int]) -> np.ndarray:
    """Lookup array: official id -> 0-based position, -1 for unknown ids."""
    ids = np.asarray(list(ids), dtype=np.int64)
    table = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    table[ids] = np.arange(len(ids))
    return table


def read_cub(root: Union[str, Path], with_attributes: bool = True) -> CubMetadata:
    """Reads and cross-checks the metadata of a CUB-200-2011 directory (no image is opened).

    Args:
        root: the CUB_200_2011 directory, or the folder holding it.
        with_attributes: also read attributes.txt and attributes/image_attribute_labels.txt.

    Raises:
        FileNotFoundError: a required file is missing (all missing files are named).
        ValueError: a malformed line, or ids that disagree between files ("file:line: ...").
    """
    root = dataset_folder(Path(root), _holds_cub, "CUB-200-2011")
    names_file = _check_files(root, with_attributes)

    images_path = root / IMAGES
    images = _id_table(images_path, _FORMATS[IMAGES])
    image_line = {image_id: lineno for image_id, (lineno, _) in images.items()}

    classes_path = root / CLASSES
    classes = _id_table(classes_path, _FORMATS[CLASSES])
    class_index = {class_id: i for i, class_id in enumerate(classes)}

    labels_path = root / CLASS_LABELS
    class_of = _image_values(labels_path, _FORMATS[CLASS_LABELS], image_line, images_path)
    for image_id, (lineno, class_id) in class_of.items():
        if class_id not in class_index:
            raise ValueError(
                f"{labels_path}:{lineno}: class id {class_id} of image {image_id} is not "
                f"listed in {classes_path}"
            )
    split_path = root / TRAIN_TEST
    split_of = _image_values(split_path, _FORMATS[TRAIN_TEST], image_line, images_path)
    for image_id, (lineno, flag) in split_of.items():
        if flag not in (0, 1):
            raise ValueError(f"{split_path}:{lineno}: is_training_image must be 0 or 1, got {flag}")

    image_ids = np.fromiter(images.keys(), dtype=np.int64, count=len(images))
    meta = CubMetadata(
        root=root,
        image_ids=image_ids,
        paths=[f"{IMAGE_DIR}/{name}" for _, name in images.values()],
        labels=np.array([class_index[class_of[i][1]] for i in image_ids], dtype=np.int64),
        is_train=np.array([split_of[i][1] == 1 for i in image_ids], dtype=bool),
        class_names=[name for _, name in classes.values()],
    )
    if not with_attributes:
        return meta

    attribute_table = _id_table(names_file, _FORMATS["attributes.txt"])
    certainty_ids: Sequence[int] = DEFAULT_CERTAINTY_IDS
    if (root / CERTAINTIES).is_file():
        certainty_table = _id_table(root / CERTAINTIES, _FORMATS[CERTAINTIES], rest=True)
        certainty_ids = list(certainty_table)
        meta.certainty_names = {k: v for k, (_, v) in certainty_table.items()}
    meta.attributes, meta.certainties = _read_attribute_labels(
        root / ATTRIBUTE_LABELS,
        image_index=_index_table(image_ids),
        attribute_index=_index_table(attribute_table),
        certainty_ids=certainty_ids,
        num_images=len(image_ids),
        image_ids=image_ids,
    )
    meta.attribute_names = [name for _, name in attribute_table.values()]
    meta.attributes_file = names_file
    return meta


class CubImages(ImageFiles):
    """CUB-200-2011 images of one split -> (PIL RGB image or transform(image), label).

    Index i of this dataset is ``meta.indices(split)[i]`` of the metadata, the same order
    as ``meta.sample_info(split)``.
    """

    def __init__(self, meta: CubMetadata, split: Split = "train",
                 transform: Optional[Callable] = None) -> None:
        indices = meta.indices(split)
        super().__init__([meta.root / meta.paths[i] for i in indices], meta.labels[indices],
                         transform)
        self.meta = meta
        self.split = split
        self.indices = indices
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image file(s) listed in {meta.root / IMAGES} do not exist, "
                f"e.g. {missing[:3]}"
            )
