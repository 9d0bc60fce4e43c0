"""Fixtures writing tiny CUB-200-2011 trees in the official on-disk format.

The expected values are spelled out here by hand; the files are written from them, so a
test compares the reader's output with these values, never with the reader itself.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

CLASS_NAMES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
ATTRIBUTE_NAMES = [
    "has_bill_shape::curved_(up_or_down)",
    "has_bill_shape::dagger",
    "has_wing_color::blue",
    "has_wing_color::brown",
]
# image_id -> (image name relative to images/, class id (1-based), is_training_image)
IMAGES = {
    1: ("001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 1, 1),
    2: ("001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1, 0),
    3: ("002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", 2, 1),
    4: ("002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg", 2, 1),
    5: ("003.Sooty_Albatross/Sooty_Albatross_0031_1066.jpg", 3, 0),
}
# (N, A) is_present and certainty ids, rows in image id order.
PRESENT = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]],
                   dtype=np.uint8)
CERTAINTY = np.array([[4, 3, 3, 4], [1, 2, 2, 3], [4, 4, 4, 4], [1, 1, 2, 2], [3, 3, 3, 3]],
                     dtype=np.uint8)
CERTAINTY_NAMES = {1: "not visible", 2: "guessing", 3: "probably", 4: "definitely"}
# The real image_attribute_labels.txt has a few lines with an extra field after the
# certainty id; this (1-based) line of our file gets one.
EXTRA_FIELD_LINE = 6


@dataclass
class CubTree:
    """A written tiny CUB tree and the values it must read back as."""

    root: Path
    image_ids: List[int] = field(default_factory=lambda: list(IMAGES))
    class_names: List[str] = field(default_factory=lambda: list(CLASS_NAMES))
    attribute_names: List[str] = field(default_factory=lambda: list(ATTRIBUTE_NAMES))
    present: np.ndarray = field(default_factory=lambda: PRESENT.copy())
    certainty: np.ndarray = field(default_factory=lambda: CERTAINTY.copy())
    certainty_names: Dict[int, str] = field(default_factory=lambda: dict(CERTAINTY_NAMES))
    extra_field_line: int = EXTRA_FIELD_LINE

    @property
    def paths(self) -> List[str]:
        return [f"images/{IMAGES[i][0]}" for i in self.image_ids]

    @property
    def labels(self) -> np.ndarray:
        return np.array([IMAGES[i][1] - 1 for i in self.image_ids])

    @property
    def is_train(self) -> np.ndarray:
        return np.array([IMAGES[i][2] == 1 for i in self.image_ids])

    def lines(self, rel: str) -> List[str]:
        return (self.root / rel).read_text(encoding="utf-8").splitlines()

    def write_lines(self, rel: str, lines: List[str]) -> None:
        (self.root / rel).write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def replace_line(self, rel: str, lineno: int, text: str) -> None:
        """Replaces the 1-based line lineno of root/rel."""
        lines = self.lines(rel)
        lines[lineno - 1] = text
        self.write_lines(rel, lines)

    def delete_line(self, rel: str, lineno: int) -> None:
        lines = self.lines(rel)
        del lines[lineno - 1]
        self.write_lines(rel, lines)

    def append_line(self, rel: str, text: str) -> None:
        self.write_lines(rel, self.lines(rel) + [text])


def attribute_label_lines() -> List[str]:
    """image_attribute_labels.txt rows: image-major like the real file, one with an extra field."""
    lines = []
    for row, image_id in enumerate(IMAGES):
        for col in range(len(ATTRIBUTE_NAMES)):
            time = 1.5 + row + col / 10
            lines.append(f"{image_id} {col + 1} {PRESENT[row, col]} {CERTAINTY[row, col]} {time:.3f}")
    fields = lines[EXTRA_FIELD_LINE - 1].split()
    lines[EXTRA_FIELD_LINE - 1] = " ".join(fields[:4] + ["0"] + fields[4:])
    return lines


def write_cub_tree(parent: Path, attributes_at: str = "parent") -> CubTree:
    """Writes parent/CUB_200_2011 with attributes.txt at "parent" (official tarball),
    "root" or "attributes" (root/attributes/)."""
    root = parent / "CUB_200_2011"
    (root / "attributes").mkdir(parents=True)
    tree = CubTree(root)
    tree.write_lines("images.txt", [f"{i} {name}" for i, (name, _, _) in IMAGES.items()])
    tree.write_lines("image_class_labels.txt", [f"{i} {c}" for i, (_, c, _) in IMAGES.items()])
    tree.write_lines("train_test_split.txt", [f"{i} {t}" for i, (_, _, t) in IMAGES.items()])
    tree.write_lines("classes.txt", [f"{k + 1} {n}" for k, n in enumerate(CLASS_NAMES)])
    tree.write_lines("attributes/certainties.txt", [f"{k} {n}" for k, n in CERTAINTY_NAMES.items()])
    tree.write_lines("attributes/image_attribute_labels.txt", attribute_label_lines())
    names = [f"{k + 1} {n}" for k, n in enumerate(ATTRIBUTE_NAMES)]
    location: Dict[str, Path] = {
        "parent": parent / "attributes.txt",
        "root": root / "attributes.txt",
        "attributes": root / "attributes" / "attributes.txt",
    }
    location[attributes_at].write_text("".join(n + "\n" for n in names), encoding="utf-8")
    for k, (i, (name, _, _)) in enumerate(IMAGES.items()):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # CUB holds a few greyscale JPEGs: image 2 is one, the reader must give RGB anyway
        mode = "L" if i == 2 else "RGB"
        Image.new(mode, (7 + k, 5), color=40 * k if mode == "L" else (40 * k, 10, 200)).save(path)
    return tree


@pytest.fixture
def cub_tree(tmp_path: Path) -> CubTree:
    """A tiny official-layout tree, attributes.txt beside CUB_200_2011 as in the tarball."""
    return write_cub_tree(tmp_path)


@pytest.fixture
def make_cub_tree(tmp_path: Path):
    """Factory: make_cub_tree(attributes_at="parent" | "root" | "attributes") -> CubTree."""
    count = iter(range(1000))

    def make(attributes_at: str = "parent") -> CubTree:
        parent = tmp_path / f"tree{next(count)}"
        parent.mkdir()
        return write_cub_tree(parent, attributes_at)

    return make
