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
from tests.imagenet_fixture import (CLASSES, IMAGES, SYNSET_NAMES, WORDS, image_names,
                                    write_imagenet_tree)


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


@pytest.mark.parametrize("dataset", ["imagenet100", "imagenet"])
def test_flat_val_without_its_csv_names_the_configured_dataset(tmp_path, dataset):
    tree = write_imagenet_tree(tmp_path, "flat")
    (tree / "LOC_val_solution.csv").unlink()
    cfg = OmegaConf.create({"dataset": dataset, "train_path": str(tree),
                            "class_list": "classes.txt"})
    with pytest.raises(DataError) as err:
        open_split(cfg, "test")
    message = str(err.value)
    assert message.startswith(f"data.dataset={dataset}: {dataset}: {tree / 'val'} holds images "
                              f"directly (the official flat validation layout) but no "
                              f"LOC_val_solution.csv labels them")
    assert f"looked in {tree}/, {tree / 'val'}/" in message
    if dataset == "imagenet":
        assert "imagenet100" not in message


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



# ----------------------------------- the layouts ImageNet is distributed in (flat val, Kaggle)


def expected_split(sub: str, prefix: str, classes=CLASSES, flat_val: bool = True):
    """(paths, labels) worked out from the fixture's tables: classes in sorted-wnid order,
    files by name within a class; a flat val/ has no class folder in the path."""
    paths, labels = [], []
    for label, wnid in enumerate(classes):
        names = sorted(image_names(wnid, sub))
        folder = f"{prefix}{sub}" if sub == "val" and flat_val else f"{prefix}{sub}/{wnid}"
        paths += [f"{folder}/{n}" for n in names]
        labels += [label] * len(names)
    return paths, labels


@pytest.mark.parametrize("dataset, classes", [("imagenet100", CLASSES),
                                              ("imagenet", sorted(IMAGES))])
def test_flat_val_is_labelled_by_loc_val_solution(tmp_path, dataset, classes):
    tree = write_imagenet_tree(tmp_path, "flat")
    class_list = "classes.txt" if dataset == "imagenet100" else None
    ds, info, num_classes = build_dataset(dataset, tree, "test", class_list=class_list)
    paths, labels = expected_split("val", "", classes)
    assert num_classes == len(classes) and info.class_names == classes
    assert info.paths == paths and info.labels.tolist() == labels
    assert ds.files == [os.path.join(str(tree), p) for p in paths]
    assert info.extra["layout"] == f"flat val/ labelled by {tree / 'LOC_val_solution.csv'}"
    # the train split of the same root is unchanged
    _, train, _ = build_dataset(dataset, tree, "train", class_list=class_list)
    assert train.paths == expected_split("train", "", classes)[0]


def test_kaggle_tree_is_read_as_it_is(tmp_path, capsys):
    tree = write_imagenet_tree(tmp_path, "kaggle")
    prefix = "ILSVRC/Data/CLS-LOC/"
    for split, sub in (("train", "train"), ("test", "val")):
        ds, info, num_classes = build(tree, split)
        paths, labels = expected_split(sub, prefix)
        assert num_classes == 4 and info.paths == paths and info.labels.tolist() == labels
        assert all(os.path.isfile(f) for f in ds.files)
    image, label = ds[2]  # val: 2 tench, then goldfish
    assert label == 1 and image.mode == "RGB" and image.size == (9, 7)
    # the entry point of linear evaluation, kNN and the online probe (root = data.val_path)
    cfg = OmegaConf.create({"dataset": "imagenet", "train_path": "unused",
                            "class_list": None, "verify_images": True})
    opened = open_split(cfg, "test", verify=True, root=str(tree))
    assert opened.num_classes == 5 and opened.info.paths == expected_split(
        "val", prefix, sorted(IMAGES))[0]
    assert (f"imagenet test: 7 images, 5 classes [Kaggle tree ILSVRC/Data/CLS-LOC; flat val/ "
            f"labelled by {tree / 'LOC_val_solution.csv'}]") in capsys.readouterr().out


def test_kaggle_cls_loc_folder_as_root_finds_the_csv_three_levels_up(tmp_path):
    tree = write_imagenet_tree(tmp_path, "kaggle")
    root = tree / "ILSVRC" / "Data" / "CLS-LOC"
    _, info, _ = build(root, "test", class_list=str(tree / "classes.txt"))
    assert info.paths == expected_split("val", "")[0]
    assert info.class_title(0) == SYNSET_NAMES[CLASSES[0]]  # LOC_synset_mapping.txt too


def test_flat_val_csv_found_inside_val(tmp_path):
    tree = write_imagenet_tree(tmp_path, "flat")
    (tree / "LOC_val_solution.csv").rename(tree / "val" / "LOC_val_solution.csv")
    assert build(tree, "test")[1].paths == expected_split("val", "")[0]


def _rewrite_csv(tree, edit):
    lines = (tree / "LOC_val_solution.csv").read_text().splitlines()
    (tree / "LOC_val_solution.csv").write_text("\r\n".join(edit(lines)) + "\r\n")


def test_loc_val_solution_errors_name_file_and_line(tmp_path):
    tree = write_imagenet_tree(tmp_path, "flat")
    csv_file = tree / "LOC_val_solution.csv"
    original = csv_file.read_text().splitlines()
    # CRLF and a BOM are fine
    csv_file.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(original).encode() + b"\r\n")
    assert build(tree, "test")[1].paths == expected_split("val", "")[0]

    _rewrite_csv(tree, lambda lines: ["ImageId,Label"] + lines[1:])
    with pytest.raises(ValueError, match=r"LOC_val_solution.csv:1: expected the header "
                                         r"'ImageId,PredictionString'"):
        build(tree, "test")
    _rewrite_csv(tree, lambda lines: original[:3] + ["ILSVRC2012_val_00000099,"] + original[3:])
    with pytest.raises(ValueError, match=r"LOC_val_solution.csv:4: expected 'ImageId,"
                                         r"PredictionString' with the wnid first"):
        build(tree, "test")
    _rewrite_csv(tree, lambda lines: original + [original[2]])
    with pytest.raises(ValueError, match=r"LOC_val_solution.csv:9: ImageId "
                                         r"'ILSVRC2012_val_00000021' is listed twice "
                                         r"\(first at line 3\)"):
        build(tree, "test")


def test_flat_val_image_without_row_or_row_without_image(tmp_path):
    tree = write_imagenet_tree(tmp_path, "flat")
    csv_file = tree / "LOC_val_solution.csv"
    original = csv_file.read_text().splitlines()
    # line 8 is ILSVRC2012_val_00000001 (tench)
    _rewrite_csv(tree, lambda lines: original[:7])
    with pytest.raises(ValueError, match=r"imagenet100: 1 image\(s\) of .*val have no row in "
                                         r".*LOC_val_solution.csv, e.g. "
                                         r"ILSVRC2012_val_00000001.JPEG"):
        build(tree, "test")
    _rewrite_csv(tree, lambda lines: original)
    (tree / "val" / "ILSVRC2012_val_00000001.JPEG").unlink()
    with pytest.raises(ValueError, match=r"LOC_val_solution.csv:8: ILSVRC2012_val_00000001 "
                                         r"\(class n01440764\) has no image in .*val"):
        build(tree, "test")


def test_flat_val_class_without_image_and_unknown_class(tmp_path):
    tree = write_imagenet_tree(tmp_path, "flat")
    # tabby's only val image (line 5) relabelled as Chihuahua: tabby has none left
    _rewrite_csv(tree, lambda lines: [ln.replace("n02123045", "n02085620") for ln in lines])
    with pytest.raises(ValueError, match=r"classes.txt:2: class 'n02123045' has no validation "
                                         r"image in .*LOC_val_solution.csv"):
        build(tree, "test")
    # imagenet reads every folder of train/: a row of another wnid is an error there
    _rewrite_csv(tree, lambda lines: [ln.replace("n02085620", "n09999999") for ln in lines])
    with pytest.raises(ValueError, match=r"LOC_val_solution.csv:4: ILSVRC2012_val_00000032 is "
                                         r"of class 'n09999999', which has no folder in "
                                         r".*train/"):
        build_dataset("imagenet", tree, "test")


def test_val_with_images_and_class_folders_is_refused(tmp_path):
    tree = write_imagenet_tree(tmp_path, "flat")
    (tree / "val" / "n01440764").mkdir()
    (tree / "val" / "ILSVRC2012_val_00000001.JPEG").rename(
        tree / "val" / "n01440764" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(ValueError, match=r"holds images directly and class folders "
                                         r"\(n01440764/ ...\); expected one of the two"):
        build(tree, "test")


# --------------------------------------------------------------------- readable class names


def test_loc_synset_mapping_gives_class_titles(tmp_path):
    from clinfonce_plugin.evaluate.embedding import class_name

    tree = write_imagenet_tree(tmp_path, "folders", names="mapping")
    _, info, _ = build(tree)
    assert info.class_names == CLASSES  # the identifiers stay the wnids
    titles = ["tench, Tinca tinca", "goldfish, Carassius auratus", "Chihuahua",
              "tabby, tabby cat"]  # CLASSES in order, from the real LOC_synset_mapping.txt
    assert [info.class_title(k) for k in range(4)] == titles
    assert [class_name(info, k) for k in range(4)] == titles  # the t-SNE legend and table
    # without either file the wnids are shown
    _, plain, _ = build(write_imagenet_tree(tmp_path / "plain"))
    assert plain.titles is None and [plain.class_title(k) for k in range(4)] == CLASSES


def test_words_txt_names_the_hierarchy_levels(tmp_path):
    tree = write_imagenet_tree(tmp_path, "folders", names="words")
    _, info, _ = build(tree)
    p = HierarchyProvider(info, pairs_file="wordnet.is_a.txt", level=3)
    # level 3: mammal n01861778 and fish n02512053 (sorted by wnid), by their WordNet names
    assert p.cluster_names == ["n01861778", "n02512053"]
    assert p.cluster_titles == [WORDS["n01861778"], WORDS["n02512053"]]
    assert p.describe().endswith("(mammal, mammalian; fish)")
    assert info.class_title(2) == "Chihuahua"


def test_synset_file_without_a_name_names_the_line(tmp_path):
    tree = write_imagenet_tree(tmp_path, "folders", names="mapping")
    with open(tree / "LOC_synset_mapping.txt", "a") as f:
        f.write("n09999999\n")
    with pytest.raises(ValueError, match=r"LOC_synset_mapping.txt:6: expected '<wnid> <name>'"):
        build(tree)
