"""A tiny ImageNet folder in the exact on-disk layouts it is distributed in, a class-list file
and a wordnet.is_a.txt fragment:

- "folders": train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the validation images sorted);
- "flat": train/<wnid>/ and the official flat val/ILSVRC2012_val_*.JPEG, labelled by
  LOC_val_solution.csv (ImageId,PredictionString) beside val/;
- "kaggle": the Kaggle ImageNet Object Localization Challenge folder,
  ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/ (flat), test/ (flat)} with LOC_val_solution.csv
  and LOC_synset_mapping.txt beside ILSVRC/.

The expected values are spelled out here by hand; the files are written from them."""
from pathlib import Path
from typing import Dict, List, Optional

from PIL import Image

# wnid -> (train images, val images); n01530575 is on disk but not in the class list
IMAGES: Dict[str, tuple] = {
    "n01440764": (4, 2),   # tench
    "n01443537": (3, 1),   # goldfish
    "n02085620": (5, 2),   # Chihuahua
    "n02123045": (4, 1),   # tabby
    "n01530575": (2, 1),   # brambling (not listed)
}
# the class list in file order (not sorted), with a comment and a blank line
CLASS_LIST_LINES = ["# ImageNet subset for the tests", "n02123045", "n01440764", "",
                    "n02085620  # Chihuahua", "n01443537"]
CLASSES = sorted(["n02123045", "n01440764", "n02085620", "n01443537"])  # label order
# A WordNet fragment (real wnids, shortened chains). mammal -> Chihuahua is a redundant edge
# (mammal is already an ancestor through dog): the deepest-parent rule keeps dog.
#   L1 entity n00001740
#   L2 animal n00015388
#   L3 fish n02512053                   mammal n01861778
#   L4 tench, goldfish                  dog n02084071      cat n02121808
#   L5                                  Chihuahua          tabby
IS_A = [
    ("n00001740", "n00015388"),
    ("n00015388", "n02512053"), ("n00015388", "n01861778"),
    ("n02512053", "n01440764"), ("n02512053", "n01443537"),
    ("n01861778", "n02084071"), ("n01861778", "n02121808"),
    ("n02084071", "n02085620"), ("n02121808", "n02123045"),
    ("n01861778", "n02085620"),
    ("n02512053", "n01530575"),
]


# LOC_synset_mapping.txt lines of the fixture's wnids (as in the real file)
SYNSET_NAMES = {
    "n01440764": "tench, Tinca tinca",
    "n01443537": "goldfish, Carassius auratus",
    "n01530575": "brambling, Fringilla montifringilla",
    "n02085620": "Chihuahua",
    "n02123045": "tabby, tabby cat",
}
# words.txt lines (tab separated) of the fragment's inner nodes
WORDS = {
    "n00001740": "entity",
    "n00015388": "animal, animate being, beast, brute, creature, fauna",
    "n02512053": "fish",
    "n01861778": "mammal, mammalian",
    "n02084071": "dog, domestic dog, Canis familiaris",
    "n02121808": "domestic cat, house cat, Felis domesticus, Felis catus",
}
KAGGLE_DATA = "ILSVRC/Data/CLS-LOC"


def image_names(wnid: str, split: str) -> List[str]:
    """File names as in the real release: <wnid>_<n>.JPEG in train, ILSVRC2012_val_* in val."""
    n_train, n_val = IMAGES[wnid]
    if split == "train":
        return [f"{wnid}_{k}.JPEG" for k in range(n_train)]
    offset = 1 + 10 * sorted(IMAGES).index(wnid)
    return [f"ILSVRC2012_val_{offset + k:08d}.JPEG" for k in range(n_val)]


def val_solution_lines() -> List[str]:
    """LOC_val_solution.csv: the header, then one row per validation image in an order that
    is neither by ImageId nor by class (the real file is unsorted); every second image has
    two boxes of the same wnid, as many real rows do."""
    rows = []
    for c, wnid in enumerate(sorted(IMAGES)):
        for k, name in enumerate(image_names(wnid, "val")):
            boxes = f"{wnid} {10 + k} {20 + c} {110 + k} {220 + c}"
            if k % 2:
                boxes += f" {wnid} 1 2 30 40"
            rows.append(f"{name[:-len('.JPEG')]},{boxes} ")
    return ["ImageId,PredictionString"] + rows[1::2] + rows[0::2][::-1]


def _write_image(path: Path, c: int, k: int) -> None:
    # distinct colours per class so a linear probe has something to learn
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (9 + k, 7), color=(60 * c, 255 - 50 * c, 30 * k)).save(path, format="JPEG")


def write_imagenet_tree(parent: Path, layout: str = "folders",
                        names: Optional[str] = None) -> Path:
    """Writes parent/imagenet in ``layout`` ("folders", "flat" or "kaggle", see the module
    docstring) with classes.txt and wordnet.is_a.txt at its top; ``names`` "mapping" adds
    LOC_synset_mapping.txt (the kaggle layout always has it), "words" adds words.txt with
    every wnid of the fragment. Returns parent/imagenet."""
    root = Path(parent) / "imagenet"
    data = root / KAGGLE_DATA if layout == "kaggle" else root
    for c, wnid in enumerate(sorted(IMAGES)):
        for k, name in enumerate(image_names(wnid, "train")):
            _write_image(data / "train" / wnid / name, c, k)
        for k, name in enumerate(image_names(wnid, "val")):
            folder = data / "val" if layout in ("flat", "kaggle") else data / "val" / wnid
            _write_image(folder / name, c, k)
    root.mkdir(parents=True, exist_ok=True)
    if layout in ("flat", "kaggle"):
        (root / "LOC_val_solution.csv").write_text("".join(f"{line}\n" for line in
                                                           val_solution_lines()))
    if layout == "kaggle":
        _write_image(data / "test" / "ILSVRC2012_test_00000001.JPEG", 0, 0)
        (root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val").mkdir(parents=True)
    if layout == "kaggle" or names == "mapping":
        (root / "LOC_synset_mapping.txt").write_text(
            "".join(f"{w} {n}\n" for w, n in SYNSET_NAMES.items()))
    if names == "words":
        (root / "words.txt").write_text(
            "".join(f"{w}\t{n}\n" for w, n in {**WORDS, **SYNSET_NAMES}.items()))
    (root / "classes.txt").write_text("".join(line + "\n" for line in CLASS_LIST_LINES))
    (root / "wordnet.is_a.txt").write_text("".join(f"{p} {c}\n" for p, c in IS_A))
    return root
