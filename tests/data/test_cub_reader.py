"""read_cub / CubImages on tiny trees written in the official CUB-200-2011 format."""
import re
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from clinfonce_plugin.data.cub import CubImages, read_cub
from clinfonce_plugin.data.registry import open_split

LABELS = "image_class_labels.txt"
ATTR_LABELS = "attributes/image_attribute_labels.txt"


def at(file: str, line: int) -> str:
    """Regex for the 'file:line:' prefix of reader errors."""
    return re.escape(file.split("/")[-1]) + f":{line}: "


# ----------------------------------------------------------------------------- values


def test_reads_back_every_value(cub_tree):
    meta = read_cub(cub_tree.root)
    assert meta.image_ids.tolist() == cub_tree.image_ids
    assert meta.paths == cub_tree.paths
    assert meta.labels.dtype == np.int64
    assert meta.labels.tolist() == cub_tree.labels.tolist() == [0, 0, 1, 1, 2]
    assert meta.is_train.dtype == bool
    assert meta.is_train.tolist() == [True, False, True, True, False]
    assert meta.class_names == cub_tree.class_names
    assert meta.num_classes == 3
    assert meta.attribute_names == cub_tree.attribute_names
    assert meta.attributes.dtype == np.uint8 and meta.certainties.dtype == np.uint8
    np.testing.assert_array_equal(meta.attributes, cub_tree.present)
    np.testing.assert_array_equal(meta.certainties, cub_tree.certainty)
    assert meta.certainty_names == cub_tree.certainty_names
    assert meta.attributes_file.resolve() == (cub_tree.root.parent / "attributes.txt").resolve()


def test_line_with_extra_field_like_the_real_file_keeps_its_values(cub_tree):
    line = cub_tree.lines(ATTR_LABELS)[cub_tree.extra_field_line - 1]
    assert len(line.split()) == 6  # the fixture really wrote the defect
    image_id, attribute_id, present, certainty = (int(v) for v in line.split()[:4])
    meta = read_cub(cub_tree.root)
    row = meta.image_ids.tolist().index(image_id)
    assert meta.attributes[row, attribute_id - 1] == present
    assert meta.certainties[row, attribute_id - 1] == certainty


def test_attribute_rows_in_any_order_and_blank_lines(cub_tree):
    lines = cub_tree.lines(ATTR_LABELS)
    rng = np.random.default_rng(0)
    shuffled = [lines[i] for i in rng.permutation(len(lines))]
    cub_tree.write_lines(ATTR_LABELS, shuffled[:7] + [""] + shuffled[7:] + ["", ""])
    meta = read_cub(cub_tree.root)
    np.testing.assert_array_equal(meta.attributes, cub_tree.present)
    np.testing.assert_array_equal(meta.certainties, cub_tree.certainty)


def test_without_attributes_needs_no_attribute_files(cub_tree):
    (cub_tree.root / ATTR_LABELS).unlink()
    (cub_tree.root.parent / "attributes.txt").unlink()
    meta = read_cub(cub_tree.root, with_attributes=False)
    assert meta.attributes is None and meta.attribute_names is None
    assert meta.labels.tolist() == cub_tree.labels.tolist()


def test_certainties_file_is_optional_then_ids_1_to_4(cub_tree):
    (cub_tree.root / "attributes/certainties.txt").unlink()
    meta = read_cub(cub_tree.root)
    np.testing.assert_array_equal(meta.certainties, cub_tree.certainty)
    cub_tree.replace_line(ATTR_LABELS, 3, "1 3 0 5 2.0")
    with pytest.raises(ValueError, match=at(ATTR_LABELS, 3) + r"certainty_id must be one of \[1, 2, 3, 4\]"):
        read_cub(cub_tree.root)


# ----------------------------------------------------------------------------- splits


def test_splits_and_sample_info(cub_tree):
    meta = read_cub(cub_tree.root)
    train, test = meta.split(True), meta.split(False)
    assert train.tolist() == [0, 2, 3] and test.tolist() == [1, 4]
    assert meta.indices("train").tolist() == train.tolist()
    assert meta.indices("test").tolist() == meta.indices("val").tolist() == test.tolist()
    assert meta.indices("all").tolist() == [0, 1, 2, 3, 4]

    info = meta.sample_info("test")
    assert info.num_samples == 2
    assert info.labels.tolist() == [0, 2]
    assert info.paths == [cub_tree.paths[1], cub_tree.paths[4]]
    assert info.paths[0].startswith("images/001.Black_footed_Albatross/")
    np.testing.assert_array_equal(info.attributes, cub_tree.present[[1, 4]])
    assert info.attribute_names == cub_tree.attribute_names
    assert info.class_names == cub_tree.class_names
    assert info.root == str(cub_tree.root)
    assert info.extra["image_ids"].tolist() == [2, 5]
    np.testing.assert_array_equal(info.extra["certainties"], cub_tree.certainty[[1, 4]])


def test_unknown_split_is_rejected(cub_tree):
    meta = read_cub(cub_tree.root)
    with pytest.raises(ValueError, match=r"unknown CUB split 'validation'.*'train'"):
        meta.indices("validation")


# ----------------------------------------------------------------------------- attributes.txt


@pytest.mark.parametrize("locations, expected", [
    (("parent",), "parent"),
    (("attributes",), "attributes"),
    (("root",), "root"),
    (("root", "attributes", "parent"), "root"),
    (("attributes", "parent"), "attributes"),
    (("root", "parent"), "root"),
])
def test_attributes_txt_search_order(make_cub_tree, locations, expected):
    tree = make_cub_tree(attributes_at=locations[0])
    where = {
        "parent": tree.root.parent / "attributes.txt",
        "root": tree.root / "attributes.txt",
        "attributes": tree.root / "attributes" / "attributes.txt",
    }
    # every copy names its attributes after its location, so we see which one was read
    for loc in locations:
        where[loc].write_text(
            "".join(f"{k + 1} has_{loc}::value_{k}\n" for k in range(4)), encoding="utf-8")
    meta = read_cub(tree.root)
    assert meta.attributes_file.resolve() == where[expected].resolve()
    assert meta.attribute_names == [f"has_{expected}::value_{k}" for k in range(4)]


# ----------------------------------------------------------------------------- missing files


@pytest.mark.parametrize("rel", [
    "images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
    "attributes/image_attribute_labels.txt",
])
def test_missing_file_names_file_and_root(cub_tree, rel):
    (cub_tree.root / rel).unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_cub(cub_tree.root)
    assert rel in str(err.value) and str(cub_tree.root) in str(err.value)


def test_missing_files_are_all_named_at_once(cub_tree):
    (cub_tree.root / "classes.txt").unlink()
    (cub_tree.root / "train_test_split.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_test_split\.txt, classes\.txt"):
        read_cub(cub_tree.root)


def test_missing_attribute_names_lists_every_place_searched(cub_tree):
    (cub_tree.root.parent / "attributes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(
            "attributes.txt or attributes/attributes.txt or ../attributes.txt")):
        read_cub(cub_tree.root)


def test_extraction_folder_above_cub_200_2011_is_read(cub_tree, capsys):
    # the tarball's own layout: parent/CUB_200_2011/ and parent/attributes.txt
    parent = cub_tree.root.parent
    (parent / "segmentations").mkdir()  # the segmentations archive, extracted beside it
    meta = read_cub(parent)
    assert meta.root == cub_tree.root
    assert meta.paths == cub_tree.paths and meta.labels.tolist() == cub_tree.labels.tolist()
    assert meta.attribute_names == cub_tree.attribute_names
    np.testing.assert_array_equal(meta.attributes, cub_tree.present)
    cfg = OmegaConf.create({"dataset": "cub", "train_path": str(parent)})
    opened = open_split(cfg, "train")
    assert opened.info.root == str(cub_tree.root) and opened.dataset.files[0] == \
        cub_tree.root / cub_tree.paths[0]
    assert f"cub train: 3 images, 3 classes, 4 attributes [dataset folder {cub_tree.root}]" \
        in capsys.readouterr().out


def test_extraction_folder_with_an_incomplete_cub_200_2011_names_its_files(cub_tree):
    (cub_tree.root / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=rf"files missing under root "
                                                rf"'{re.escape(str(cub_tree.root))}': classes.txt"):
        read_cub(cub_tree.root.parent)


def test_folder_holding_two_cub_roots_is_refused(cub_tree):
    shutil.copytree(cub_tree.root, cub_tree.root.parent / "CUB_copy")
    with pytest.raises(FileNotFoundError, match=r"holds no dataset itself and several folders "
                                                r"inside it do \(CUB_200_2011/, CUB_copy/\)"):
        read_cub(cub_tree.root.parent)


def test_root_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        read_cub(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- malformed lines


@pytest.mark.parametrize("rel, lineno, bad, fmt", [
    ("images.txt", 2, "2", "<image_id> <image_name>"),
    ("images.txt", 4, "x4 002.Laysan_Albatross/a.jpg", "<image_id> <image_name>"),
    ("image_class_labels.txt", 3, "3 x", "<image_id> <class_id>"),
    ("image_class_labels.txt", 5, "5 3 1", "<image_id> <class_id>"),
    ("train_test_split.txt", 1, "1 yes", "<image_id> <is_training_image>"),
    ("classes.txt", 2, "two 002.Laysan_Albatross", "<class_id> <class_name>"),
    ("attributes/certainties.txt", 3, "3", "<certainty_id> <certainty_name>"),
    ("attributes/image_attribute_labels.txt", 7, "2 3 1",
     "<image_id> <attribute_id> <is_present> <certainty_id> <time>"),
    ("attributes/image_attribute_labels.txt", 18, "5 2 yes 4 1.0",
     "<image_id> <attribute_id> <is_present> <certainty_id> <time>"),
    ("attributes/image_attribute_labels.txt", 1, "1 1 0 3.5 1.0",
     "<image_id> <attribute_id> <is_present> <certainty_id> <time>"),
])
def test_malformed_line_names_file_line_format_and_text(cub_tree, rel, lineno, bad, fmt):
    cub_tree.replace_line(rel, lineno, bad)
    expected = at(rel, lineno) + re.escape(f"expected '{fmt}', got '{bad}'")
    with pytest.raises(ValueError, match=expected):
        read_cub(cub_tree.root)


def test_malformed_attribute_name_line(cub_tree):
    (cub_tree.root.parent / "attributes.txt").write_text(
        "1 has_a::x\n2 has_a::y\n3\n4 has_b::z\n", encoding="utf-8")
    with pytest.raises(ValueError, match=at("attributes.txt", 3) + "expected '<attribute_id> <attribute_name>'"):
        read_cub(cub_tree.root)


def test_empty_file(cub_tree):
    cub_tree.write_lines("classes.txt", [])
    with pytest.raises(ValueError, match=r"classes\.txt: file is empty"):
        read_cub(cub_tree.root)


# ----------------------------------------------------------------------------- inconsistent ids


def test_label_for_unknown_image(cub_tree):
    cub_tree.append_line(LABELS, "99 1")
    with pytest.raises(ValueError, match=at(LABELS, 6) + r"image id 99 is not listed in .*images\.txt"):
        read_cub(cub_tree.root)


def test_image_without_label_points_at_its_images_txt_line(cub_tree):
    cub_tree.delete_line(LABELS, 4)
    with pytest.raises(ValueError, match=r"image_class_labels\.txt: no line for image id 4 "
                                         r"\(.*images\.txt:4\)"):
        read_cub(cub_tree.root)


def test_image_without_split(cub_tree):
    cub_tree.delete_line("train_test_split.txt", 2)
    with pytest.raises(ValueError, match=r"train_test_split\.txt: no line for image id 2 "):
        read_cub(cub_tree.root)


def test_duplicate_image_id(cub_tree):
    cub_tree.replace_line("images.txt", 3, "1 002.Laysan_Albatross/x.jpg")
    with pytest.raises(ValueError, match=at("images.txt", 3) + r"duplicate id 1 \(first at line 1\)"):
        read_cub(cub_tree.root)


def test_duplicate_label_line(cub_tree):
    cub_tree.append_line(LABELS, "2 2")
    with pytest.raises(ValueError, match=at(LABELS, 6) + r"duplicate image id 2 \(first at line 2\)"):
        read_cub(cub_tree.root)


def test_class_id_not_in_classes(cub_tree):
    cub_tree.replace_line(LABELS, 5, "5 4")
    with pytest.raises(ValueError, match=at(LABELS, 5) + r"class id 4 of image 5 is not listed"):
        read_cub(cub_tree.root)


def test_split_flag_must_be_0_or_1(cub_tree):
    cub_tree.replace_line("train_test_split.txt", 2, "2 2")
    with pytest.raises(ValueError, match=at("train_test_split.txt", 2) + "is_training_image must be 0 or 1"):
        read_cub(cub_tree.root)


@pytest.mark.parametrize("lineno, bad, why", [
    (9, "3 5 1 4 1.0", "attribute id out of range"),
    (9, "7 1 1 4 1.0", "image id not listed in images.txt"),
    (10, "3 2 2 4 1.0", "is_present must be 0 or 1"),
    (11, "3 3 1 9 1.0", r"certainty_id must be one of \[1, 2, 3, 4\]"),
])
def test_inconsistent_attribute_row(cub_tree, lineno, bad, why):
    cub_tree.replace_line(ATTR_LABELS, lineno, bad)
    with pytest.raises(ValueError, match=at(ATTR_LABELS, lineno) + why + ".*" + re.escape(f", got '{bad}'")):
        read_cub(cub_tree.root)


def test_duplicate_attribute_pair_points_at_the_repeat(cub_tree):
    # line 13 (image 4, attribute 1) becomes a second row for image 3, attribute 2 (line 10)
    cub_tree.replace_line(ATTR_LABELS, 13, "3 2 0 4 1.0")
    with pytest.raises(ValueError, match=at(ATTR_LABELS, 13) + r"duplicate \(image_id, attribute_id\) pair"):
        read_cub(cub_tree.root)


def test_duplicate_attribute_pair_line_numbers_count_blank_lines(cub_tree):
    lines = cub_tree.lines(ATTR_LABELS)
    cub_tree.write_lines(ATTR_LABELS, lines[:2] + ["", ""] + lines[2:] + ["1 1 0 1 0.5"])
    with pytest.raises(ValueError, match=at(ATTR_LABELS, 23) + "duplicate"):
        read_cub(cub_tree.root)


def test_missing_attribute_pair(cub_tree):
    cub_tree.delete_line(ATTR_LABELS, 15)  # image 4, attribute 3
    with pytest.raises(ValueError, match=r"image_attribute_labels\.txt: no line for image id 4 "
                                         r"and attribute id 3"):
        read_cub(cub_tree.root)


# ----------------------------------------------------------------------------- images


def test_cub_images_returns_rgb_pil_and_label(cub_tree):
    meta = read_cub(cub_tree.root)
    test_set = CubImages(meta, "test")
    assert len(test_set) == 2
    image, label = test_set[0]  # image id 2: a greyscale JPEG on disk
    assert image.mode == "RGB" and image.size == (8, 5)
    assert label == 0
    image, label = test_set[1]
    assert image.mode == "RGB" and image.size == (11, 5) and label == 2
    assert test_set.targets.tolist() == meta.sample_info("test").labels.tolist()


def test_cub_images_applies_transform(cub_tree):
    meta = read_cub(cub_tree.root)
    train = CubImages(meta, "train", transform=lambda im: torch.tensor(im.size))
    assert [train[i][0].tolist() for i in range(3)] == [[7, 5], [9, 5], [10, 5]]
    assert [train[i][1] for i in range(3)] == [0, 1, 1]


def test_cub_images_missing_image_fails_at_construction(cub_tree):
    (cub_tree.root / cub_tree.paths[3]).unlink()
    meta = read_cub(cub_tree.root)
    CubImages(meta, "test")  # image 4 is a train image
    with pytest.raises(FileNotFoundError, match="Laysan_Albatross_0003_1033.jpg"):
        CubImages(meta, "train")


def test_cub_images_rejects_non_callable_transform(cub_tree):
    with pytest.raises(ValueError, match="transform must be callable"):
        CubImages(read_cub(cub_tree.root), "train", transform="flip")
