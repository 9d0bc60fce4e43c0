"""Checks the utzappos reader against the split of the official Cl-InfoNCE files, at full size.

The Cl-InfoNCE repository (github.com/Crazy-Jack/Cl-InfoNCE) ships
``data_processing/UT-zappos50K/rank_H/meta_data_train.csv`` and ``meta_data_val.csv``: the
35,017 + 15,008 image paths of its 7:3 split. From a local clone of that folder this script
builds a UT-Zappos50K tree with the same 50,025 file names (one tiny white JPEG each, random
attribute values, meta-data.csv rows shuffled, a matching meta-data-bin.csv), reads it with ``data.split_seed=0`` and
reports whether the reader's train and test splits are the official ones, in the same
order, whether its labels partition the images like the official ``class`` column, and how
long a read takes. Nothing is downloaded:

    python bench/utzappos_official_split.py --rank-h <clone>/data_processing/UT-zappos50K/rank_H
"""
import argparse
import csv
import io
import os
import random
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from PIL import Image  # noqa: E402

from clinfonce_plugin.clusters.precomputed import PrecomputedProvider  # noqa: E402
from clinfonce_plugin.data.registry import build_dataset  # noqa: E402
from clinfonce_plugin.data.utzappos import ATTRIBUTES, COLUMNS, read_utzappos  # noqa: E402

# placeholder values: the check is about rows, paths and the split, not attribute statistics
VALUES = {"HeelHeight": ["Flat", "Under 1in", "1in - 1 3/4in", ""],
          "Insole": ["Padded", "Removable", ""],
          "Closure": ["Lace up", "Slip-On", "Buckle;Zipper"],
          "Gender": ["Men", "Women", "Boys;Girls"],
          "Material": ["Leather", "Suede", "Leather;Mesh"],
          "ToeStyle": ["Round Toe", "Pointed Toe", ""]}


def official_rows(path):
    """(path, class) of the data rows of a rank_H csv (index column first, summary row -1)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f)][1:]
    return [(r[1], int(r[2])) for r in rows if r[0] != "-1"]


def build_tree(root, paths, seed=0):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(buf, "JPEG")
    rng = random.Random(seed)
    rows = []
    for rel in paths:
        full = os.path.join(root, "ut-zap50k-images-square", rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(buf.getvalue())
        category, sub, _, name = rel.split("/")
        row = {"CID": name[:-4].replace(".", "-"), "Category": category, "SubCategory": sub}
        row.update({k: rng.choice(v) for k, v in VALUES.items()})
        rows.append([row[c] for c in COLUMNS])
    rng.shuffle(rows)
    os.makedirs(os.path.join(root, "ut-zap50k-data"))
    with open(os.path.join(root, "ut-zap50k-data", "meta-data.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    # meta-data-bin.csv in make.names spelling, so that the cross-check runs at full size
    bin_columns = []
    for j, name in enumerate(COLUMNS[1:], start=1):
        if name in ATTRIBUTES or name == "SubCategory":
            values = sorted({v for row in rows for v in row[j].split(";") if v})
            bin_columns += [(j, v, re.sub(r"[^0-9A-Za-z]", ".", f"{name}.{v}")) for v in values]
    with open(os.path.join(root, "ut-zap50k-data", "meta-data-bin.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["CID"] + [c for _, _, c in bin_columns])
        for row in rows:
            writer.writerow([row[0]] + [int(v in row[j].split(";")) for j, v, _ in bin_columns])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rank-h", required=True,
                        help="Cl-InfoNCE's data_processing/UT-zappos50K/rank_H folder")
    parser.add_argument("--workdir", default=None, help="where to build the tree (default: temp)")
    args = parser.parse_args(argv)
    train = official_rows(os.path.join(args.rank_h, "meta_data_train.csv"))
    val = official_rows(os.path.join(args.rank_h, "meta_data_val.csv"))
    workdir = args.workdir or tempfile.mkdtemp(prefix="utzappos-")
    root = os.path.join(workdir, "ut-zap50k")
    build_tree(root, [p for p, _ in train + val])

    start = time.process_time()
    meta = read_utzappos(root)
    read_cpu = time.process_time() - start
    bin_path = os.path.join(root, "ut-zap50k-data", "meta-data-bin.csv")
    os.rename(bin_path, bin_path + ".off")
    start = time.process_time()
    read_utzappos(root)
    read_cpu_nobin = time.process_time() - start
    os.rename(bin_path + ".off", bin_path)
    _, info, num_classes = build_dataset("utzappos", root, "train", split_seed=0)
    _, test_info, _ = build_dataset("utzappos", root, "test", split_seed=0)

    def strip(paths):  # ours are relative to train_path, theirs to the image folder
        return [p.split("/", 1)[1] for p in paths]

    pairs = set(zip(info.labels.tolist(), [c for _, c in train]))
    start = time.process_time()
    provider = PrecomputedProvider(info, file=os.path.join(args.rank_h, "meta_data_train.csv"),
                                   k=20)
    match_cpu = time.process_time() - start
    print(f"images: train {info.num_samples} (official {len(train)}), test "
          f"{test_info.num_samples} (official {len(val)}); classes {num_classes}")
    print(f"train split = official meta_data_train.csv, same order: "
          f"{strip(info.paths) == [p for p, _ in train]}")
    print(f"test split = official meta_data_val.csv, same order: "
          f"{strip(test_info.paths) == [p for p, _ in val]}")
    print(f"labels and the official class column are a bijection: "
          f"{len(pairs) == num_classes == len({b for _, b in pairs})}")
    print(f"precomputed provider on meta_data_train.csv, k=20: {provider.num_clusters} "
          f"clusters")
    print(f"meta-data-bin.csv columns compared: {len(meta.bin_checked)} (of "
          f"{meta.attributes.shape[1]} attribute columns)")
    print(f"CPU time: read_utzappos {read_cpu_nobin:.2f} s without meta-data-bin.csv, "
          f"{read_cpu:.2f} s with it; precomputed csv match {match_cpu:.2f} s")
    print(f"tree left in {workdir}")


if __name__ == "__main__":
    main()
