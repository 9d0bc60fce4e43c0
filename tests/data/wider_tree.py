"""Tiny WIDER Attribute trees in the official on-disk format (imported as tests.data.wider_tree).

The expected values are spelled out here by hand: each person's 14 attribute values as a
string (``+`` = 1 positive, ``-`` = -1 negative, ``0`` = 0 unspecified) and each image's
OR over its persons as a bit string, worked out by hand. The JSON files are written from
the person strings, so a test compares the reader's output with the hand-worked bits,
never with the reader itself.

Layout of a written JSON file (so that error positions are known by hand): line 1 is
``{"images": [``, image i is on line i + 2 starting at column 1, then the two maps.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# 14 names in the order third-party loaders of the release list them
ATTRIBUTE_NAMES = ["male", "longhair", "sunglass", "hat", "tshirt", "longsleeve", "formal",
                   "shorts", "jeans", "longpants", "skirt", "facemask", "logo", "stripe"]
SCENE_MAP = {0: "Parade", 1: "Handshaking", 2: "Riot"}
SCENE_DIRS = {0: "0--Parade", 1: "1--Handshaking", 2: "3--Riot"}
_VALUE = {"+": 1, "-": -1, "0": 0}


@dataclass(frozen=True)
class Img:
    """One image entry: file_name (relative to Image/), scene_id, persons, hand-worked OR."""

    file_name: str
    scene_id: int
    persons: Tuple[str, ...]
    expected_or: str


TRAINVAL = [
    Img("train/0--Parade/0_Parade_marchingband_1_100.jpg", 0,
        ("+-0-+-0-+-0-+-", "--+0+---0--0-0"), "10101000100010"),
    Img("train/0--Parade/0_Parade_Parade_0_12.jpg", 0,
        ("--------------",), "00000000000000"),
    Img("train/1--Handshaking/1_Handshaking_Handshaking_1_35.jpg", 1,
        ("00000000000000", "+000000000000+"), "10000000000001"),
    Img("train/3--Riot/3_Riot_Riot_3_7.jpg", 2,
        ("-+-+-+-+-+-+-+", "0+0+0+0+0+0+0+", "+++-----------"), "11110101010101"),
    Img("train/3--Riot/3_Riot_Riot_3_21.jpg", 2,
        ("0-0-0-0-0-0-0+",), "00000000000001"),
    Img("val/0--Parade/0_Parade_marchingband_1_1004.jpg", 0,
        ("0000+000000000", "00000+00000000"), "00001100000000"),
    Img("val/1--Handshaking/1_Handshaking_Handshaking_1_2.jpg", 1,
        ("-0-0-0-0-0-0-0",), "00000000000000"),
]
TEST = [
    Img("test/0--Parade/0_Parade_marchingband_1_1007.jpg", 0,
        ("++++++++++++++",), "11111111111111"),
    Img("test/1--Handshaking/1_Handshaking_Handshaking_1_94.jpg", 1,
        ("+-------------", "-+------------"), "11000000000000"),
    Img("test/3--Riot/3_Riot_Riot_3_17.jpg", 2,
        ("0000000000000+", "-------------0"), "00000000000001"),
    Img("test/3--Riot/3_Riot_Riot_3_26.jpg", 2,
        ("-+0--0--0--0--",), "01000000000000"),
]
TRAIN_LABELS = [0, 0, 1, 2, 2, 0, 1]
TEST_LABELS = [0, 1, 2, 2]
GREY_IMAGE = "train/1--Handshaking/1_Handshaking_Handshaking_1_35.jpg"  # a greyscale JPEG


def image_entry(img: Img) -> dict:
    """The official JSON object of one image (bbox values are arbitrary: not read)."""
    return {
        "targets": [{"attribute": [_VALUE[c] for c in person], "bbox": [3 + k, 2, 10, 20]}
                    for k, person in enumerate(img.persons)],
        "file_name": img.file_name,
        "scene_id": img.scene_id,
    }


def annotation_text(entries: Sequence[object], attribute_names: Optional[Sequence[str]],
                    scene_map: Optional[Dict[int, str]], extra: str = "") -> str:
    """A JSON file in the layout described above (one image object per line)."""
    lines = ['{"images": [']
    for k, entry in enumerate(entries):
        lines.append(json.dumps(entry) + ("," if k < len(entries) - 1 else ""))
    tail = ["]"]
    if attribute_names is not None:
        tail.append('"attribute_id_map": ' + json.dumps(
            {str(a): n for a, n in enumerate(attribute_names)}))
    if scene_map is not None:
        tail.append('"scene_id_map": ' + json.dumps({str(k): v for k, v in scene_map.items()}))
    lines.append(",\n".join(tail) + extra + "}")
    return "\n".join(lines) + "\n"


@dataclass
class WiderTree:
    """A written tiny tree and the values it must read back as."""

    root: Path
    trainval: List[Img]
    test: List[Img]

    @property
    def annotation_dir(self) -> Path:
        return self.root / "wider_attribute_annotation"

    @property
    def trainval_json(self) -> Path:
        return self.annotation_dir / "wider_attribute_trainval.json"

    @property
    def test_json(self) -> Path:
        return self.annotation_dir / "wider_attribute_test.json"

    def entries(self, which: str) -> List[dict]:
        return [image_entry(img) for img in (self.trainval if which == "trainval" else self.test)]

    def write_json(self, which: str, entries: Sequence[object],
                   attribute_names: Optional[Sequence[str]] = tuple(ATTRIBUTE_NAMES),
                   scene_map: Optional[Dict[int, str]] = None, newline: str = "\n",
                   bom: bool = False) -> Path:
        """(Re)writes one JSON file from entries, with the given maps and line ends."""
        path = self.trainval_json if which == "trainval" else self.test_json
        text = annotation_text(entries, attribute_names,
                               SCENE_MAP if scene_map is None else scene_map)
        data = ("\ufeff" if bom else "") + text.replace("\n", newline)
        path.write_bytes(data.encode("utf-8"))
        return path


def write_jpeg(path: Path, k: int, grey: bool = False, size: Tuple[int, int] = (9, 7)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if grey:
        Image.new("L", size, color=30 + 10 * k).save(path, "JPEG")
    else:
        Image.new("RGB", (size[0] + k % 3, size[1]), color=(20 * k % 256, 90, 200)).save(
            path, "JPEG")


def write_wider_tree(root: Path, trainval: Sequence[Img] = TRAINVAL,
                     test: Sequence[Img] = TEST) -> WiderTree:
    """root/wider_attribute_annotation/{trainval,test}.json and root/Image/<file_name>."""
    tree = WiderTree(root, list(trainval), list(test))
    tree.annotation_dir.mkdir(parents=True)
    tree.write_json("trainval", tree.entries("trainval"))
    tree.write_json("test", tree.entries("test"))
    for k, img in enumerate(tree.trainval + tree.test):
        write_jpeg(root / "Image" / img.file_name, k, grey=img.file_name == GREY_IMAGE)
    return tree


def write_generated_tree(root: Path, trainval_per_scene: int = 8, test_per_scene: int = 4,
                         seed: int = 0) -> WiderTree:
    """A larger tree for end-to-end runs: 3 scenes, random persons (1-3 per image), 32x24
    JPEGs whose colour depends on the scene. Its OR strings are not hand-worked."""
    rng = np.random.default_rng(seed)

    def make(split: str, count: int) -> List[Img]:
        out = []
        for scene, scene_dir in SCENE_DIRS.items():
            for n in range(count):
                persons = tuple("".join(rng.choice(list("+-0"), size=14, p=[0.3, 0.5, 0.2]))
                                for _ in range(int(rng.integers(1, 4))))
                out.append(Img(f"{split}/{scene_dir}/{scene_dir.split('--')[1]}_{split}_{n}.jpg",
                               scene, persons, ""))
        return out

    trainval = make("train", trainval_per_scene - 2) + make("val", 2)
    test = make("test", test_per_scene)
    tree = WiderTree(root, trainval, test)
    tree.annotation_dir.mkdir(parents=True)
    tree.write_json("trainval", tree.entries("trainval"))
    tree.write_json("test", tree.entries("test"))
    for k, img in enumerate(trainval + test):
        path = root / "Image" / img.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]][img.scene_id])
        pixels = np.clip(base + rng.normal(0, 30, size=(24, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, "JPEG")
    return tree
