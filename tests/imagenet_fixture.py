"""A tiny ImageNet folder in the exact on-disk layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG),
a class-list file and a wordnet.is_a.txt fragment. The expected values are spelled out here by
hand; the files are written from them."""
from pathlib import Path
from typing import Dict, List

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


def image_names(wnid: str, split: str) -> List[str]:
    """File names as in the real release: <wnid>_<n>.JPEG in train, ILSVRC2012_val_* in val."""
    n_train, n_val = IMAGES[wnid]
    if split == "train":
        return [f"{wnid}_{k}.JPEG" for k in range(n_train)]
    offset = 1 + 10 * sorted(IMAGES).index(wnid)
    return [f"ILSVRC2012_val_{offset + k:08d}.JPEG" for k in range(n_val)]


def write_imagenet_tree(parent: Path) -> Path:
    """Writes parent/imagenet with train/, val/, classes.txt and wordnet.is_a.txt; returns it."""
    root = Path(parent) / "imagenet"
    for split in ("train", "val"):
        for c, wnid in enumerate(sorted(IMAGES)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for k, name in enumerate(image_names(wnid, split)):
                # distinct colours per class so a linear probe has something to learn
                Image.new("RGB", (9 + k, 7), color=(60 * c, 255 - 50 * c, 30 * k)).save(
                    folder / name, format="JPEG")
    (root / "classes.txt").write_text("".join(line + "\n" for line in CLASS_LIST_LINES))
    (root / "wordnet.is_a.txt").write_text("".join(f"{p} {c}\n" for p, c in IS_A))
    return root
