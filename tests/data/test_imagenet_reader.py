"""imagenet100 reader on a tiny tree in the exact ImageNet layout (tests/imagenet_fixture.py),
and its malformed variants."""
import os
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from clinfonce_plugin.clusters.hierarchy import HierarchyProvider
from clinfonce_plugin.data.imagenet import read_class_list
from clinfonce_plugin.data.registry import build_dataset, open_split
from clinfonce_plugin.errors import DataError
from tests.imagenet_fixture import CLASSES, IMAGES, image_names, write_imagenet_tree


@pytest.fixture
def tree(tmp_path):
    return write_imagenet_tree(tmp_path)


def build(root, split="train", class_list="classes.txt"):
    return build_dataset("imagenet100", root, split, class_list=class_list)


@pytest.mark.parametrize("split, sub, column", [("train", "train", 0), ("test", "val", 1),
                                                ("val", "val", 1), (True, "train", 0),
                                                (False, "val", 1)])
def test_reads_the_listed_classes_in_sorted_wnid_order(tree, split, sub, column):
    ds, info, num_classes = build(tree, split)
    assert num_classes == 4 and info.class_names == CLASSES  # the unlisted wnid is left out
    expected_paths, expected_labels = [], []
    for label, wnid in enumerate(CLASSES):
        names = sorted(image_names(wnid, "train" if column == 0 else "val"))
        expected_paths += [f"{sub}/{wnid}/{n}" for n in names]
        expected_labels += [label] * IMAGES[wnid][column]
    assert info.paths == expected_paths
    assert info.labels.tolist() == expected_labels
    assert info.num_samples == len(ds) == sum(IMAGES[w][column] for w in CLASSES)
    assert ds.files == [os.path.join(str(tree), p) for p in expected_paths]
    assert info.root == str(tree) and info.attributes is None


def test_item_is_an_rgb_image_and_its_label(tree):
    ds, info, _ = build(tree)
    image, label = ds[5]  # 4 tench, then goldfish 0..2: index 5 is goldfish image 1
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (10, 7)
    assert label == 1 == info.labels[5]
    ds_t, _, _ = build_dataset("imagenet100", tree, "train", transform=lambda im: im.size,
                               class_list="classes.txt")
    assert ds_t[0] == ((9, 7), 0)


def test_class_list_found_from_cwd_or_absolute(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    assert build(tree, class_list="imagenet/classes.txt")[2] == 4  # from the cwd
    assert build(tree, class_list=str(tree / "classes.txt"))[2] == 4


def test_class_list_accepts_bom_crlf_and_several_names_per_line(tree):
    # solo-learn's imagenet100_classes.txt has every wnid on one line
    (tree / "one_line.txt").write_bytes(
        b"\xef\xbb\xbf" + b" ".join(w.encode() for w in reversed(CLASSES)) + b"\r\n")
    assert build(tree, class_list="one_line.txt")[1].class_names == CLASSES
    assert read_class_list(tree / "one_line.txt") == [(w, 1) for w in reversed(CLASSES)]
    (tree / "crlf.txt").write_bytes(b"\xef\xbb\xbf# x\r\nn01440764\r\n\r\nn02123045\r\n")
    assert read_class_list(tree / "crlf.txt") == [("n01440764", 2), ("n02123045", 4)]


def test_missing_class_list_names_the_key(tree):
    with pytest.raises(ValueError, match=r"imagenet100 needs data.class_list"):
        build(tree, class_list=None)
    with pytest.raises(FileNotFoundError, match=r"data.class_list 'nope.txt' not found"):
        build(tree, class_list="nope.txt")


def test_unknown_wnid_names_file_and_line(tree):
    (tree / "classes.txt").write_text("n01440764\n\nn09999999\n")
    with pytest.raises(ValueError, match=r"classes.txt:3: class 'n09999999' has no folder "
                                         r".*train/n09999999 \(expected train/<wnid>"):
        build(tree)


def test_duplicated_wnid_names_both_lines(tree):
    (tree / "classes.txt").write_text("n01440764\nn02123045  # tabby\nn01440764\n")
    with pytest.raises(ValueError, match=r"classes.txt:3: class 'n01440764' is listed twice "
                                         r"\(first at line 1\)"):
        build(tree)


def test_empty_class_list(tree):
    (tree / "classes.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match=r"classes.txt: no class listed"):
        build(tree)


def test_empty_class_folder(tree):
    for f in (tree / "train" / "n01443537").iterdir():
        f.unlink()
    (tree / "train" / "n01443537" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"class folder .*train/n01443537 holds no image"):
        build(tree)


def test_missing_val_folder_names_the_layout(tree):
    shutil.rmtree(tree / "val")
    assert build(tree)[2] == 4  # the train split does not need val/
    with pytest.raises(FileNotFoundError, match=r"val is missing; expected the ImageNet folder "
                                                r"layout train/<wnid>/\*.JPEG and val/<wnid>"):
        build(tree, "test")


def test_flat_official_val_asks_for_the_reorganisation(tree):
    shutil.rmtree(tree / "val")
    (tree / "val").mkdir()
    Image.new("RGB", (4, 4)).save(tree / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(ValueError, match=r"official flat validation layout.*re-organisation"):
        build(tree, "val")


def test_root_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"is not a directory; expected the ImageNet "
                                                r"folder holding train/<wnid>"):
        build(tmp_path / "nope")


def test_unknown_split(tree):
    with pytest.raises(ValueError, match=r"unknown imagenet100 split 'all'"):
        build(tree, "all")


def test_open_split_prints_counts_and_turns_errors_into_data_errors(tree, capsys):
    cfg = OmegaConf.create({"dataset": "imagenet100", "train_path": str(tree),
                            "class_list": "classes.txt", "verify_images": "auto"})
    opened = open_split(cfg, "train", verify=True)
    assert opened.num_classes == 4
    assert "imagenet100 train: 16 images, 4 classes" in capsys.readouterr().out
    cfg.class_list = None
    with pytest.raises(DataError, match=r"data.dataset=imagenet100: imagenet100 needs "
                                        r"data.class_list"):
        open_split(cfg, "train")


def test_wnids_sit_in_the_wordnet_pairs_file(tree):
    _, info, _ = build(tree)
    # level 3: tench, goldfish -> fish; Chihuahua, tabby -> mammal (hand-read from the
    # fragment in tests/imagenet_fixture.py); level 4: Chihuahua keeps dog (the deepest
    # parent), tabby -> cat
    expected = {3: ["n02512053", "n02512053", "n01861778", "n01861778"],
                4: ["n01440764", "n01443537", "n02084071", "n02121808"]}
    for level, per_class in expected.items():
        p = HierarchyProvider(info, pairs_file="wordnet.is_a.txt", level=level)
        names = [p.cluster_names[i] for i in p.ids.tolist()]
        assert names == [per_class[label] for label in info.labels.tolist()]
    assert np.unique(p.ids).size == 4


# ----------------------------------------------------------------------------- imagenet (1K)


@pytest.mark.parametrize("split, sub, column", [("train", "train", 0), ("test", "val", 1)])
def test_imagenet_without_class_list_reads_every_class_folder(tree, split, sub, column):
    ds, info, num_classes = build_dataset("imagenet", tree, split)
    every = sorted(IMAGES)  # the unlisted wnid is a class here
    assert num_classes == 5 and info.class_names == every
    expected_labels = [c for c, w in enumerate(every) for _ in range(IMAGES[w][column])]
    assert info.labels.tolist() == expected_labels
    assert info.paths[:IMAGES[every[0]][column]] == [
        f"{sub}/{every[0]}/{n}" for n in sorted(image_names(every[0], sub))]


def test_imagenet_with_class_list_equals_imagenet100(tree):
    _, full, n_full = build_dataset("imagenet", tree, "train", class_list="classes.txt")
    _, subset, n_sub = build(tree)
    assert n_full == n_sub == 4 and full.paths == subset.paths
    assert full.labels.tolist() == subset.labels.tolist()


def test_imagenet_val_class_missing_names_the_folder(tree):
    shutil.rmtree(tree / "val" / "n01530575")
    with pytest.raises(ValueError, match=r"train/ class 'n01530575' has no folder .*val"):
        build_dataset("imagenet", tree, "test")
