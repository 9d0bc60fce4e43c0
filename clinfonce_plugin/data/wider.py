"""Reader for the official WIDER Attribute release (Li et al., ECCV 2016, "Human Attribute
Recognition by Deep Hierarchical Contexts"; http://mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html).

``root`` is the directory that holds the annotation folder and the image tree, or a folder
whose only sub-folder holding them is the top folder an archive added (``data/roots.py``)::

    wider_attribute_annotation/wider_attribute_trainval.json   official train + val images
    wider_attribute_annotation/wider_attribute_test.json       official test images
    Image/train/<scene_dir>/<file>.jpg    e.g. Image/train/0--Parade/0_Parade_marchingband_1_100.jpg
    Image/val/<scene_dir>/<file>.jpg
    Image/test/<scene_dir>/<file>.jpg

The two JSON files are looked up in ``root/wider_attribute_annotation`` (the folder of the
official ``wider_attribute_annotation.zip``), then ``root`` itself, ``root/Annotations`` and
``root/Anno`` (layouts used by common third-party loaders); both must sit in the same
folder. Each file is one JSON object::

    {"images": [{"file_name": "train/0--Parade/x.jpg",   relative to Image/
                 "scene_id": 0,
                 "targets": [{"attribute": [14 ints: 1 positive, -1 negative, 0 unspecified],
                              "bbox": [x, y, width, height]}, ...]},   one target per person
                ...],
     "attribute_id_map": {"0": "<attribute name>", ...},
     "scene_id_map": {"0": "<scene name>", ...}}

There are no separate train and val files: the official val images are in the trainval file
with ``file_name`` under ``val/``.

What the reader makes of it (Cl-InfoNCE App. E.2):

- one sample per image (whole images, not person crops); train = every image of the
  trainval file (official train + val), test = every image of the test file;
- label = the scene: the position of ``scene_id`` among the sorted integer keys of
  ``scene_id_map`` (the ids themselves when they are 0..C-1), class names its values; when
  neither file has a ``scene_id_map``, the sorted distinct scene ids of both files;
- attributes: per image, attribute a is 1 when at least one person has value 1 for it, else
  0 (-1 negative and 0 unspecified both count as not positive); names from
  ``attribute_id_map`` (its keys must be 0..A-1), else ``attribute_<a>`` for the 14 of
  the release; ``bbox`` is not read;
- ``SampleInfo.paths`` are ``Image/<file_name>``, relative to ``root``.

Every error names the JSON file with ``line:column`` (of the syntax error, or of the image
object that is wrong) and what was expected. The files are decoded as UTF-8 with an optional
byte-order mark; CRLF line ends are JSON whitespace.
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from clinfonce_plugin.clusters.sample_info import SampleInfo
from clinfonce_plugin.data.images import ImageFiles
from clinfonce_plugin.data.roots import dataset_folder

Split = Union[bool, str]

TRAINVAL_JSON = "wider_attribute_trainval.json"
TEST_JSON = "wider_attribute_test.json"
IMAGE_DIR = "Image"
# Search order for the folder holding both JSON files, relative to root.
ANNOTATION_DIR_CANDIDATES = ("wider_attribute_annotation", ".", "Annotations", "Anno")
NUM_ATTRIBUTES = 14  # of the release; used when a file has no attribute_id_map
ATTRIBUTE_VALUES = (1, -1, 0)  # positive, negative, unspecified
_VALUE_SET = frozenset(ATTRIBUTE_VALUES)
IMAGE_FORMAT = ('{"file_name": "<split>/<scene_dir>/<file>.jpg", "scene_id": <int>, '
                '"targets": [{"attribute": [...], "bbox": [x, y, w, h]}, ...]}')

_WHITESPACE = re.compile(r"[ \t\n\r]*")


@dataclass
class WiderAnnotations:
    """One JSON file, read and checked: its images in file order.

    Attributes:
        file: the JSON file.
        file_names: N paths relative to Image/, as in the file.
        scene_ids: (N,) int64 official scene ids.
        attributes: (N, A) uint8, 1 where some person of the image is positive.
        num_persons: (N,) int64 number of targets per image.
        attribute_names: A names from attribute_id_map, None when the file has none.
        scene_names: official scene id -> name from scene_id_map, None when the file has none.
    """

    file: Path
    file_names: List[str]
    scene_ids: np.ndarray
    attributes: np.ndarray
    num_persons: np.ndarray
    attribute_names: Optional[List[str]]
    scene_names: Optional[Dict[int, str]]

    def where(self, index: int) -> str:
        """``file:line:column`` of image ``index``'s object (``file`` when unknown). Reads
        the file again: only error messages need it, so the text is not kept."""
        try:
            text = self.file.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return str(self.file)
        return _where(self.file, text, index)


@dataclass
class WiderMetadata:
    """Both files of a WIDER Attribute root: the trainval images first, then the test images.

    Attributes:
        root: the dataset root (holds Image/).
        annotation_dir: where the JSON files were found.
        paths: N image paths relative to root, ``Image/<file_name>``.
        labels: (N,) int64 scene class 0..C-1.
        is_train: (N,) bool, True for the images of the trainval file.
        class_names: C scene names.
        attributes: (N, A) uint8 OR over the persons of each image.
        attribute_names: A names.
        scene_ids: (N,) int64 official scene ids.
        sources: per image, (annotations of its file, index in that file).
    """

    root: Path
    annotation_dir: Path
    paths: List[str]
    labels: np.ndarray
    is_train: np.ndarray
    class_names: List[str]
    attributes: np.ndarray
    attribute_names: List[str]
    scene_ids: np.ndarray
    num_persons: np.ndarray
    sources: List[Tuple[WiderAnnotations, int]] = field(repr=False, default_factory=list)

    @property
    def num_samples(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, split: Split) -> np.ndarray:
        """Indices for a split: True/"train" (the trainval file), False/"test" (the test file;
        alias "val", the evaluation split as for the other readers: the official val images
        are part of train) or "all"."""
        if isinstance(split, (bool, np.bool_)):
            split = "train" if split else "test"
        if split == "train":
            return np.flatnonzero(self.is_train).astype(np.int64)
        if split in ("test", "val"):
            return np.flatnonzero(~self.is_train).astype(np.int64)
        if split == "all":
            return np.arange(self.num_samples, dtype=np.int64)
        raise ValueError(f"unknown WIDER Attribute split {split!r}. "
                         f"Choose from ['all', 'test', 'train', 'val'] or a bool")

    def sample_info(self, split: Split = "all") -> SampleInfo:
        """SampleInfo of one split, indexed like ``WiderImages(self, split)``."""
        idx = self.indices(split)
        if len(idx) == 0:
            raise ValueError(f"WIDER Attribute split {split!r} of {self.root} has no images")
        return SampleInfo(
            num_samples=len(idx),
            labels=self.labels[idx],
            class_names=list(self.class_names),
            attributes=self.attributes[idx],
            attribute_names=list(self.attribute_names),
            paths=[self.paths[i] for i in idx],
            root=str(self.root),
            extra={"scene_ids": self.scene_ids[idx], "num_persons": self.num_persons[idx],
                   "is_train": self.is_train[idx]},
        )


def _line_col(text: str, pos: int) -> Tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _image_offset(text: str, index: int) -> Optional[int]:
    """Character offset of ``images[index]`` in a JSON text that json.loads accepted, found
    by walking the top-level object with the standard decoder (only called to place an
    error message, so the normal read stays a plain json.loads)."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _WHITESPACE.match(text, i).end()

    try:
        i = skip(0)
        if text[i] != "{":
            return None
        i = skip(i + 1)
        offset = None
        while text[i] == '"':
            key, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # past ':'
            if key == "images" and text[i] == "[":
                i = skip(i + 1)
                count = 0
                while text[i] != "]":
                    if count == index:
                        offset = i  # the last "images" key wins, as in json.loads
                    _, i = decoder.raw_decode(text, i)
                    i = skip(i)
                    if text[i] == ",":
                        i = skip(i + 1)
                    count += 1
                i += 1
            else:
                _, i = decoder.raw_decode(text, i)
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
        return offset
    except (ValueError, IndexError):
        return None


def _where(path: Path, text: str, index: int) -> str:
    offset = _image_offset(text, index) if text else None
    if offset is None:
        return str(path)
    line, col = _line_col(text, offset)
    return f"{path}:{line}:{col}"


def _load_json(path: Path) -> Tuple[Any, str]:
    """(parsed object, text) of a UTF-8 JSON file with an optional BOM."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {err.start}: {err.reason}); "
                         f"expected a UTF-8 JSON file") from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id_map(path: Path, top: dict, key: str) -> Optional[Dict[int, str]]:
    """The {"<int>": "<name>"} map ``key`` of the file as {int: name}, None when absent."""
    if key not in top:
        return None
    value = top[key]
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{path}: {key!r} must be a non-empty object "
                         f'{{"<id>": "<name>", ...}}, got {json.dumps(value)[:80]}')
    out: Dict[int, str] = {}
    for k, name in value.items():
        text = k.strip()
        if not (text.lstrip("-").isdigit() and text.isascii()) or not isinstance(name, str):
            raise ValueError(f"{path}: {key!r} entry {json.dumps(k)}: {json.dumps(name)} must "
                             f"map an integer id (as a string) to a name")
        out[int(text)] = name
    return out


def read_wider_annotations(path: Union[str, Path]) -> WiderAnnotations:
    """Reads and checks one official WIDER Attribute JSON file (no image is opened).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid JSON (``file:line:column``) or an entry that breaks the format
            (``file:line:column`` of the image object, its index and file_name).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WIDER Attribute annotation file {path} does not exist")
    top, text = _load_json(path)
    if not isinstance(top, dict) or not isinstance(top.get("images"), list):
        got = (f"an object with keys {sorted(top)[:6]}" if isinstance(top, dict)
               else f"a JSON {type(top).__name__}")
        raise ValueError(f"{path}: expected one JSON object with an 'images' list "
                         f"(and 'attribute_id_map', 'scene_id_map'), got {got}")
    attribute_map = _id_map(path, top, "attribute_id_map")
    scene_map = _id_map(path, top, "scene_id_map")
    if attribute_map is not None and sorted(attribute_map) != list(range(len(attribute_map))):
        raise ValueError(f"{path}: 'attribute_id_map' keys must be 0..{len(attribute_map) - 1} "
                         f"(one per position of a target's 'attribute' list), got "
                         f"{sorted(attribute_map)}")
    num_attributes = len(attribute_map) if attribute_map is not None else NUM_ATTRIBUTES
    images = top["images"]
    if not images:
        raise ValueError(f"{path}: 'images' is empty; expected one entry per image {IMAGE_FORMAT}")

    def fail(index: int, name: Optional[str], what: str) -> ValueError:
        label = f"images[{index}]" + (f" ({name!r})" if name else "")
        return ValueError(f"{_where(path, text, index)}: {label}: {what}")

    file_names: List[str] = []
    scene_ids = np.zeros(len(images), dtype=np.int64)
    person_values: List[List[int]] = []  # every person's list, image by image
    num_persons = np.zeros(len(images), dtype=np.int64)
    first_seen: Dict[str, int] = {}
    allowed = "1 (positive), -1 (negative) or 0 (unspecified)"
    for i, image in enumerate(images):
        if not isinstance(image, dict):
            raise fail(i, None, f"expected an object {IMAGE_FORMAT}, got "
                                f"{json.dumps(image)[:60]}")
        name = image.get("file_name")
        missing = [k for k in ("file_name", "scene_id", "targets") if k not in image]
        if missing:
            raise fail(i, name if isinstance(name, str) else None,
                       f"no {', '.join(repr(k) for k in missing)} key; expected {IMAGE_FORMAT}")
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        if (not isinstance(name, str) or not name.strip() or name.startswith("/")
                or "\\" in name or ".." in parts):
            raise fail(i, None, f"'file_name' must be a path relative to {IMAGE_DIR}/ such as "
                                f"'train/0--Parade/x.jpg', got {json.dumps(name)}")
        if name in first_seen:
            raise fail(i, name, f"the same file_name as images[{first_seen[name]}]; "
                                f"expected each image once")
        first_seen[name] = i
        scene = image["scene_id"]
        if not _is_int(scene):
            raise fail(i, name, f"'scene_id' must be an integer, got {json.dumps(scene)}")
        if scene_map is not None and scene not in scene_map:
            raise fail(i, name, f"scene_id {scene} is not a key of this file's scene_id_map "
                                f"(ids {min(scene_map)}..{max(scene_map)}, {len(scene_map)} "
                                f"scenes)")
        if scene < 0:
            raise fail(i, name, f"scene_id must be >= 0, got {scene}")
        targets = image["targets"]
        if not isinstance(targets, list):
            raise fail(i, name, f"'targets' must be a list of persons "
                                f'{{"attribute": [...], "bbox": [...]}}, got '
                                f"{json.dumps(targets)[:60]}")
        for j, target in enumerate(targets):
            values = target.get("attribute") if isinstance(target, dict) else None
            if not isinstance(values, list):
                raise fail(i, name, f"targets[{j}] must be an object with an 'attribute' list "
                                    f"of {num_attributes} values, got {json.dumps(target)[:60]}")
            if len(values) != num_attributes:
                source = "attribute_id_map" if attribute_map is not None else "the release"
                raise fail(i, name, f"targets[{j}].attribute has {len(values)} values, "
                                    f"expected {num_attributes} (one per attribute of {source})")
            # type() is int: rejects true/false and 1.0, which compare equal to 1
            if not (all(type(v) is int for v in values) and _VALUE_SET.issuperset(values)):
                a, value = next((a, v) for a, v in enumerate(values)
                                if not _is_int(v) or v not in ATTRIBUTE_VALUES)
                raise fail(i, name, f"targets[{j}].attribute[{a}] is {json.dumps(value)}, "
                                    f"expected {allowed}")
            person_values.append(values)
        file_names.append(name)
        scene_ids[i] = scene
        num_persons[i] = len(targets)
    # OR over the persons of each image: positive (1) when any person's value is 1
    attributes = np.zeros((len(images), num_attributes), dtype=np.uint8)
    if person_values:
        owner = np.repeat(np.arange(len(images)), num_persons)
        np.maximum.at(attributes, owner, (np.asarray(person_values) == 1).astype(np.uint8))
    return WiderAnnotations(
        file=path,
        file_names=file_names,
        scene_ids=scene_ids,
        attributes=attributes,
        num_persons=num_persons,
        attribute_names=None if attribute_map is None else [attribute_map[a] for a in
                                                            range(num_attributes)],
        scene_names=scene_map,
    )


def find_annotation_dir(root: Union[str, Path]) -> Optional[Path]:
    """First folder among ANNOTATION_DIR_CANDIDATES holding the trainval JSON, or None."""
    root = Path(root)
    for rel in ANNOTATION_DIR_CANDIDATES:
        candidate = root / rel
        if (candidate / TRAINVAL_JSON).is_file():
            return root if rel == "." else candidate
    return None


def _holds_wider(folder: Path) -> bool:
    """The folder holds part of the release: Image/ or the annotation files."""
    return (folder / IMAGE_DIR).is_dir() or find_annotation_dir(folder) is not None


def _check_root(root: Path) -> Path:
    layout = (f"{ANNOTATION_DIR_CANDIDATES[0]}/{TRAINVAL_JSON}, "
              f"{ANNOTATION_DIR_CANDIDATES[0]}/{TEST_JSON} and {IMAGE_DIR}/")
    if not root.is_dir():
        raise FileNotFoundError(f"WIDER Attribute root {str(root)!r} is not a directory; "
                                f"expected the directory holding {layout}")
    annotation_dir = find_annotation_dir(root)
    missing = []
    if annotation_dir is None:
        places = ", ".join(f"{(root / rel).as_posix().rstrip('/.')}/" for rel in
                           ANNOTATION_DIR_CANDIDATES)
        missing.append(f"{TRAINVAL_JSON} (looked in {places})")
    elif not (annotation_dir / TEST_JSON).is_file():
        missing.append(f"{annotation_dir / TEST_JSON} (beside {TRAINVAL_JSON})")
    if not (root / IMAGE_DIR).is_dir():
        missing.append(f"{root / IMAGE_DIR}/")
    if missing:
        hint = ""
        if root.name in (IMAGE_DIR, ANNOTATION_DIR_CANDIDATES[0]) or (
                (root / "train").is_dir() and (root / "test").is_dir()):
            hint = (f" ({root} looks like a folder inside the dataset: data.train_path must be "
                    f"its parent, the directory holding both {ANNOTATION_DIR_CANDIDATES[0]}/ "
                    f"and {IMAGE_DIR}/)")
        raise FileNotFoundError(
            f"WIDER Attribute files missing under root {str(root)!r}: {'; '.join(missing)}. "
            f"Expected the official layout: {layout}<split>/<scene_dir>/<file>.jpg{hint}")
    return annotation_dir


def _same(first: WiderAnnotations, second: WiderAnnotations, attr: str, what: str) -> None:
    a, b = getattr(first, attr), getattr(second, attr)
    if a is not None and b is not None and a != b:
        raise ValueError(f"{second.file}: {what} differs from the one of {first.file}; "
                         f"the two files of a release must agree")


def read_wider(root: Union[str, Path]) -> WiderMetadata:
    """Reads and cross-checks both JSON files of a WIDER Attribute root (no image is opened).

    Raises:
        FileNotFoundError: a JSON file or Image/ is missing (all are named).
        ValueError: a malformed file (see ``read_wider_annotations``), maps that differ
            between the files, or an image listed in both files.
    """
    root = dataset_folder(Path(root), _holds_wider, "WIDER Attribute")
    annotation_dir = _check_root(root)
    trainval = read_wider_annotations(annotation_dir / TRAINVAL_JSON)
    test = read_wider_annotations(annotation_dir / TEST_JSON)
    _same(trainval, test, "attribute_names", "attribute_id_map")
    _same(trainval, test, "scene_names", "scene_id_map")
    if trainval.attributes.shape[1] != test.attributes.shape[1]:
        raise ValueError(f"{test.file}: {test.attributes.shape[1]} attributes per person, but "
                         f"{trainval.attributes.shape[1]} in {trainval.file}")
    in_trainval = {name: i for i, name in enumerate(trainval.file_names)}
    for j, name in enumerate(test.file_names):
        if name in in_trainval:
            raise ValueError(f"{test.where(j)}: images[{j}] ({name!r}) is also listed in "
                             f"{trainval.where(in_trainval[name])} as images[{in_trainval[name]}]; "
                             f"expected disjoint train and test images")

    scene_names = trainval.scene_names or test.scene_names
    if scene_names is not None:
        # a file without a map is checked against the other file's
        for part in (trainval, test):
            unknown = ~np.isin(part.scene_ids, np.asarray(sorted(scene_names)))
            if unknown.any():
                i = int(np.flatnonzero(unknown)[0])
                raise ValueError(
                    f"{part.where(i)}: images[{i}] ({part.file_names[i]!r}): scene_id "
                    f"{int(part.scene_ids[i])} is not a key of the scene_id_map "
                    f"(ids {min(scene_names)}..{max(scene_names)}, {len(scene_names)} scenes)")
        scene_order = sorted(scene_names)
        class_names = [scene_names[s] for s in scene_order]
    else:
        scene_order = sorted(set(trainval.scene_ids.tolist()) | set(test.scene_ids.tolist()))
        class_names = [str(s) for s in scene_order]
    class_of = {scene: c for c, scene in enumerate(scene_order)}

    attribute_names = trainval.attribute_names or test.attribute_names or [
        f"attribute_{a}" for a in range(trainval.attributes.shape[1])]
    parts = (trainval, test)
    scene_ids = np.concatenate([p.scene_ids for p in parts])
    return WiderMetadata(
        root=root,
        annotation_dir=annotation_dir,
        paths=[f"{IMAGE_DIR}/{name}" for p in parts for name in p.file_names],
        labels=np.array([class_of[int(s)] for s in scene_ids], dtype=np.int64),
        is_train=np.concatenate([np.ones(len(trainval.file_names), dtype=bool),
                                 np.zeros(len(test.file_names), dtype=bool)]),
        class_names=class_names,
        attributes=np.concatenate([p.attributes for p in parts]),
        attribute_names=list(attribute_names),
        scene_ids=scene_ids,
        num_persons=np.concatenate([p.num_persons for p in parts]),
        sources=[(p, i) for p in parts for i in range(len(p.file_names))],
    )


class WiderImages(ImageFiles):
    """WIDER Attribute images of one split -> (PIL RGB image or transform(image), scene class).

    Index i of this dataset is ``meta.indices(split)[i]`` of the metadata, the same order
    as ``meta.sample_info(split)``.
    """

    def __init__(self, meta: WiderMetadata, split: Split = "train",
                 transform: Optional[Callable] = None) -> None:
        indices = meta.indices(split)
        super().__init__([meta.root / meta.paths[i] for i in indices], meta.labels[indices],
                         transform)
        self.meta = meta
        self.split = split
        self.indices = indices
        missing = [i for i, f in zip(self.indices, self.files) if not f.is_file()]
        if missing:
            examples = []
            for i in missing[:3]:
                part, k = meta.sources[i]
                examples.append(f"{part.where(k)}: images[{k}] -> {meta.root / meta.paths[i]}")
            raise FileNotFoundError(
                f"{len(missing)} image file(s) listed in {meta.sources[missing[0]][0].file} "
                f"do not exist under {meta.root / IMAGE_DIR}, e.g. {'; '.join(examples)}")

