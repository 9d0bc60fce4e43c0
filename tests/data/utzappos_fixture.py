"""A tiny UT-Zappos50K release in the official layout, and the values it must read back as.

The expected values are written out by hand here; the files are written from the rows, so a
test compares the reader with these values, never with the reader itself.
"""
import csv
from pathlib import Path
from typing import Dict, List

from PIL import Image

HEADER = ["CID", "Category", "SubCategory", "HeelHeight", "Insole", "Closure", "Gender",
          "Material", "ToeStyle"]
# meta-data.csv rows in file order (not numeric CID order), plus the brand folder.
# (CID, Category, SubCategory, HeelHeight, Insole, Closure, Gender, Material, ToeStyle, Brand)
ROWS = [
    ("7403685-255", "Shoes", "Oxfords", "Flat", "", "Lace up", "Men", "Leather;Suede",
     "Capped Toe", "Bostonian"),
    ("100627-72", "Shoes", "Oxfords", "1in - 1 3/4in", "Padded", "Lace up", "Men", "Leather",
     "Wingtip", "Bostonian"),
    ("99999-3", "Boots", "Ankle", "", "", "Zipper;Pull-on", "Women", "Suede", "Round Toe",
     "Frye"),
    ("7403685-3", "Shoes", "Oxfords", "Flat", "Padded;Removable", "Lace up", "Men;Women",
     "Canvas", "", "Bostonian"),
    ("108237-1670", "Boots", "Mid-Calf", "1in - 1 3/4in", "", "Pull-on", "Women", "Leather",
     "Round Toe", "Dr. Martens"),
    ("8014403-585", "Shoes", "Sneakers and Athletic Shoes", "Flat", "Removable", "Lace up",
     "Boys", "Mesh;Rubber", "Round Toe", "Converse Inc."),
    ("8014403-3", "Shoes", "Sneakers and Athletic Shoes", "Flat", "", "Hook and Loop",
     "Girls;Boys", "Mesh", "Round Toe", "Converse Inc."),
    ("7892181-326309", "Boots", "Ankle", "2in - 2 3/4in", "Padded", "Zipper", "Women",
     "Leather", "Pointed Toe", "Keen"),
    ("12-1", "Sandals", "Flat", "Flat", "", "Buckle", "Women", "Leather", "Open Toe",
     "Softspots"),
    ("12-2", "Sandals", "Flat", "Flat", "", "Ankle Strap;Buckle", "Women", "", "Open Toe",
     "Softspots"),
]
# Hand-sorted by the numeric (product, colour) pair of the CID.
ORDER = ["12-1", "12-2", "99999-3", "100627-72", "108237-1670", "7403685-3", "7403685-255",
         "7892181-326309", "8014403-3", "8014403-585"]
CLASS_NAMES = ["Ankle", "Mid-Calf", "Flat", "Oxfords", "Sneakers and Athletic Shoes"]
LABELS = [2, 2, 0, 3, 1, 3, 3, 0, 4, 4]  # in ORDER
ATTRIBUTE_NAMES = [
    "Category::Boots", "Category::Sandals", "Category::Shoes",
    "HeelHeight::1in - 1 3/4in", "HeelHeight::2in - 2 3/4in", "HeelHeight::Flat",
    "Insole::Padded", "Insole::Removable",
    "Closure::Ankle Strap", "Closure::Buckle", "Closure::Hook and Loop", "Closure::Lace up",
    "Closure::Pull-on", "Closure::Zipper",
    "Gender::Boys", "Gender::Girls", "Gender::Men", "Gender::Women",
    "Material::Canvas", "Material::Leather", "Material::Mesh", "Material::Rubber",
    "Material::Suede",
    "ToeStyle::Capped Toe", "ToeStyle::Open Toe", "ToeStyle::Pointed Toe",
    "ToeStyle::Round Toe", "ToeStyle::Wingtip",
]
# The attribute values set to 1 for each image, in ORDER.
ONES = {
    "12-1": ["Category::Sandals", "HeelHeight::Flat", "Closure::Buckle", "Gender::Women",
             "Material::Leather", "ToeStyle::Open Toe"],
    "12-2": ["Category::Sandals", "HeelHeight::Flat", "Closure::Ankle Strap",
             "Closure::Buckle", "Gender::Women", "ToeStyle::Open Toe"],
    "99999-3": ["Category::Boots", "Closure::Pull-on", "Closure::Zipper", "Gender::Women",
                "Material::Suede", "ToeStyle::Round Toe"],
    "100627-72": ["Category::Shoes", "HeelHeight::1in - 1 3/4in", "Insole::Padded",
                  "Closure::Lace up", "Gender::Men", "Material::Leather", "ToeStyle::Wingtip"],
    "108237-1670": ["Category::Boots", "HeelHeight::1in - 1 3/4in", "Closure::Pull-on",
                    "Gender::Women", "Material::Leather", "ToeStyle::Round Toe"],
    "7403685-3": ["Category::Shoes", "HeelHeight::Flat", "Insole::Padded", "Insole::Removable",
                  "Closure::Lace up", "Gender::Men", "Gender::Women", "Material::Canvas"],
    "7403685-255": ["Category::Shoes", "HeelHeight::Flat", "Closure::Lace up", "Gender::Men",
                    "Material::Leather", "Material::Suede", "ToeStyle::Capped Toe"],
    "7892181-326309": ["Category::Boots", "HeelHeight::2in - 2 3/4in", "Insole::Padded",
                       "Closure::Zipper", "Gender::Women", "Material::Leather",
                       "ToeStyle::Pointed Toe"],
    "8014403-3": ["Category::Shoes", "HeelHeight::Flat", "Closure::Hook and Loop",
                  "Gender::Boys", "Gender::Girls", "Material::Mesh", "ToeStyle::Round Toe"],
    "8014403-585": ["Category::Shoes", "HeelHeight::Flat", "Insole::Removable",
                    "Closure::Lace up", "Gender::Boys", "Material::Mesh", "Material::Rubber",
                    "ToeStyle::Round Toe"],
}
# meta-data-bin.csv column names (R's make.names spelling) in the release's style: every
# value of every column, SubCategory included, which the reader does not compare.
BIN_COLUMNS = ["Category.Boots", "Category.Sandals", "Category.Shoes", "SubCategory.Ankle",
               "SubCategory.Mid.Calf", "SubCategory.Flat", "SubCategory.Oxfords",
               "SubCategory.Sneakers.and.Athletic.Shoes", "HeelHeight.1in...1.3.4in",
               "HeelHeight.2in...2.3.4in", "HeelHeight.Flat", "Insole.Padded",
               "Insole.Removable", "Closure.Ankle.Strap", "Closure.Buckle",
               "Closure.Hook.and.Loop", "Closure.Lace.up", "Closure.Pull.on", "Closure.Zipper",
               "Gender.Boys", "Gender.Girls", "Gender.Men", "Gender.Women", "Material.Canvas",
               "Material.Leather", "Material.Mesh", "Material.Rubber", "Material.Suede",
               "ToeStyle.Capped.Toe", "ToeStyle.Open.Toe", "ToeStyle.Pointed.Toe",
               "ToeStyle.Round.Toe", "ToeStyle.Wingtip"]
IMAGE_DIR = "ut-zap50k-images-square"
IMAGE_SIDE = 20


def image_path(cid: str) -> str:
    """The image of a CID relative to the root, as the release lays it out."""
    row = next(r for r in ROWS if r[0] == cid)
    product, colour = cid.split("-")
    return f"{IMAGE_DIR}/{row[1]}/{row[2]}/{row[9]}/{product}.{colour}.jpg"


def bin_value(row: tuple, column: str) -> int:
    """The meta-data-bin.csv entry of a row, by hand from the row's values."""
    attribute, value = column.split(".", 1)
    fields = dict(zip(HEADER, row))
    spelled = {v.replace(" ", ".").replace("-", ".").replace("/", "."): v
               for v in fields[attribute].split(";") if v}
    return int(value in spelled)


def write_release(root: Path, with_bin: bool = True, square: bool = True,
                  crlf_bom: bool = False) -> Path:
    """Writes the tiny release under root; the image of row i is filled with colour
    (10 * i, 100, 200) so a test can tell which file was read."""
    root.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(ROWS):
        path = root / image_path(row[0])
        if not square:
            path = root / image_path(row[0]).replace(IMAGE_DIR, "ut-zap50k-images", 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (IMAGE_SIDE, IMAGE_SIDE) if square else (IMAGE_SIDE, IMAGE_SIDE * 3 // 4)
        Image.new("RGB", size, (10 * i, 100, 200)).save(path, quality=95)
    data = root / "ut-zap50k-data"
    data.mkdir(exist_ok=True)
    newline = "\r\n" if crlf_bom else "\n"
    encoding = "utf-8-sig" if crlf_bom else "utf-8"
    with open(data / "meta-data.csv", "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f, lineterminator=newline)
        writer.writerow(HEADER)
        writer.writerows(row[:9] for row in ROWS)
    if with_bin:
        with open(data / "meta-data-bin.csv", "w", newline="", encoding=encoding) as f:
            writer = csv.writer(f, lineterminator=newline)
            writer.writerow(["CID"] + BIN_COLUMNS)
            for row in ROWS:
                writer.writerow([row[0]] + [bin_value(row, c) for c in BIN_COLUMNS])
    return root


def meta_line(cid: str) -> int:
    """The line of a CID in the written meta-data.csv (header on line 1)."""
    return 2 + [r[0] for r in ROWS].index(cid)


def replace_line(path: Path, line: int, text: str) -> None:
    """Replaces one (1-based) line of a text file."""
    lines: List[str] = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def precomputed_csv(path: Path, rows: Dict[str, Dict[str, int]], order: List[str]) -> None:
    """A cluster file in the format of Cl-InfoNCE's rank_H/meta_data_train.csv (pandas
    ``to_csv``): an unnamed index column, path (relative to the image folder), class,
    label_gran_<k> columns, and a final summary row with index -1."""
    columns = list(next(iter(rows.values())))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["", "path"] + columns)
        for cid in order:
            writer.writerow([ORDER.index(cid), image_path(cid).split("/", 1)[1]]
                            + [rows[cid][c] for c in columns])
        writer.writerow([-1, "num_per_label_gran"]
                        + [len({rows[cid][c] for cid in order}) for c in columns])
