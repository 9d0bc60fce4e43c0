"""WIDER Attribute reader against tiny trees in the official format (tests/data/wider_tree.py):
labels, OR-ed attributes, paths, splits, the Cl-InfoNCE csv keys, and malformed variants."""
import json
import re

import numpy as np
import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.clusters.registry import build_provider
from clinfonce_plugin.data.registry import build_dataset, open_split
from clinfonce_plugin.data.wider import read_wider, read_wider_annotations
from clinfonce_plugin.errors import DataError
from tests.data.wider_tree import (ATTRIBUTE_NAMES, SCENE_MAP, TEST, TEST_LABELS, TRAIN_LABELS,
                                   TRAINVAL, write_wider_tree)


def bits(images):
    return np.array([[int(c) for c in img.expected_or] for img in images], dtype=np.uint8)


@pytest.fixture
def tree(tmp_path):
    return write_wider_tree(tmp_path / "wider_attribute")


def test_train_is_the_trainval_file_with_scene_labels_and_or_attributes(tree):
    dataset, info, num_classes = build_dataset("wider_attribute", tree.root, "train")
    assert num_classes == 3 and len(dataset) == info.num_samples == 7
    assert info.labels.tolist() == TRAIN_LABELS
    assert np.array_equal(info.attributes, bits(TRAINVAL))
    assert info.attribute_names == ATTRIBUTE_NAMES
    assert info.class_names == ["Parade", "Handshaking", "Riot"]
    assert info.paths == ["Image/" + img.file_name for img in TRAINVAL]
    assert info.root == str(tree.root)
    assert info.extra["num_persons"].tolist() == [2, 1, 2, 3, 1, 2, 1]
    assert info.extra["scene_ids"].tolist() == [0, 0, 1, 2, 2, 0, 1]
    assert dataset.files == [tree.root / "Image" / img.file_name for img in TRAINVAL]
    image, target = dataset[2]  # the greyscale JPEG comes back as RGB
    assert image.mode == "RGB" and image.size == (9, 7) and target == 1
    assert [dataset[i][1] for i in range(7)] == TRAIN_LABELS


@pytest.mark.parametrize("split", ["test", "val", False])
def test_test_split_is_the_test_file(tree, split):
    dataset, info, num_classes = build_dataset("wider_attribute", tree.root, split)
    assert num_classes == 3 and len(dataset) == 4
    assert info.labels.tolist() == TEST_LABELS
    assert np.array_equal(info.attributes, bits(TEST))
    assert info.paths == ["Image/" + img.file_name for img in TEST]
    assert [dataset[i][1] for i in range(4)] == TEST_LABELS


def test_all_split_and_train_flag(tree):
    meta = read_wider(tree.root)
    assert meta.num_samples == 11 and meta.is_train.tolist() == [True] * 7 + [False] * 4
    assert meta.indices(True).tolist() == list(range(7))
    assert meta.indices("all").tolist() == list(range(11))
    assert meta.sample_info("all").labels.tolist() == TRAIN_LABELS + TEST_LABELS
    with pytest.raises(ValueError, match=r"unknown WIDER Attribute split 'dev'"):
        meta.indices("dev")


def test_scene_ids_are_ranked_among_the_scene_id_map_keys(tree):
    # if a release numbers scenes like the WIDER folders (0, 1, 3), classes are their ranks
    scene_map = {0: "Parade", 1: "Handshaking", 3: "Riot"}
    for which in ("trainval", "test"):
        entries = tree.entries(which)
        for entry in entries:
            entry["scene_id"] = {0: 0, 1: 1, 2: 3}[entry["scene_id"]]
        tree.write_json(which, entries, scene_map=scene_map)
    meta = read_wider(tree.root)
    assert meta.labels.tolist() == TRAIN_LABELS + TEST_LABELS
    assert meta.class_names == ["Parade", "Handshaking", "Riot"]
    assert meta.scene_ids[:7].tolist() == [0, 0, 1, 3, 3, 0, 1]


def test_files_without_maps_get_numbered_names(tree):
    for which in ("trainval", "test"):
        tree.write_json(which, tree.entries(which), attribute_names=None, scene_map={})
        text = tree.trainval_json.read_text()
        assert "attribute_id_map" not in text
    # scene_map={} writes an empty map: drop it from the text to have no map at all
    for path in (tree.trainval_json, tree.test_json):
        path.write_text(path.read_text().replace(',\n"scene_id_map": {}', ""))
    meta = read_wider(tree.root)
    assert meta.attribute_names == [f"attribute_{a}" for a in range(14)]
    assert meta.class_names == ["0", "1", "2"]
    assert meta.labels.tolist() == TRAIN_LABELS + TEST_LABELS
    assert np.array_equal(meta.attributes, bits(TRAINVAL + TEST))


def test_bom_and_crlf_files_read_the_same(tree):
    tree.write_json("trainval", tree.entries("trainval"), bom=True, newline="\r\n")
    tree.write_json("test", tree.entries("test"), bom=True)
    assert tree.trainval_json.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert b"\r\n" in tree.trainval_json.read_bytes()
    meta = read_wider(tree.root)
    assert meta.labels.tolist() == TRAIN_LABELS + TEST_LABELS
    assert np.array_equal(meta.attributes, bits(TRAINVAL + TEST))
    assert meta.attribute_names == ATTRIBUTE_NAMES


def test_image_without_persons_has_no_positive_attribute(tree):
    entries = tree.entries("trainval")
    entries[1]["targets"] = []
    tree.write_json("trainval", entries)
    meta = read_wider(tree.root)
    assert meta.num_persons[1] == 0 and not meta.attributes[1].any()


# ---- malformed variants: file, line:column, what was expected ----

def _error(exc_type, root, match):
    with pytest.raises(exc_type) as info:
        read_wider(root)
    assert re.search(match, str(info.value)), str(info.value)
    return str(info.value)


@pytest.mark.parametrize("newline,bom", [("\n", False), ("\r\n", False), ("\n", True)])
def test_invalid_json_gives_line_and_column(tree, newline, bom):
    tree.write_json("trainval", tree.entries("trainval"), newline=newline, bom=bom)
    raw = tree.trainval_json.read_bytes()
    # drop the comma that ends line 3 (images[1]): the parser stops at line 4, column 1
    lines = raw.split(b"\n")
    lines[2] = lines[2].replace(b"},", b"}")
    tree.trainval_json.write_bytes(b"\n".join(lines))
    _error(ValueError, tree.root, rf"^{re.escape(str(tree.trainval_json))}:4:1: invalid JSON: "
                                  r"Expecting ',' delimiter$")


def test_truncated_json(tree):
    text = tree.test_json.read_text()
    tree.test_json.write_text(text[: text.index('"scene_id_map"') + 5])
    _error(ValueError, tree.root, rf"{re.escape(str(tree.test_json))}:\d+:\d+: invalid JSON")


def test_non_utf8_file(tree):
    tree.test_json.write_bytes(tree.test_json.read_bytes().replace(b"Parade", b"Par\xe9de"))
    _error(ValueError, tree.root, rf"{re.escape(str(tree.test_json))}:2: not UTF-8 text")


@pytest.mark.parametrize("key,line,label", [
    ("scene_id", 5, r"images\[3\] \('train/3--Riot/3_Riot_Riot_3_7.jpg'\)"),
    ("targets", 5, r"images\[3\] \('train/3--Riot/3_Riot_Riot_3_7.jpg'\)"),
    ("file_name", 5, r"images\[3\]"),  # no name to show
])
def test_missing_key_names_image_and_line(tree, key, line, label):
    entries = tree.entries("trainval")
    del entries[3][key]
    tree.write_json("trainval", entries)
    _error(ValueError, tree.root,
           rf"^{re.escape(str(tree.trainval_json))}:{line}:1: {label}: no '{key}' key; "
           r"expected \{\"file_name\"")


def test_attribute_list_of_wrong_length(tree):
    entries = tree.entries("test")
    entries[1]["targets"][1]["attribute"].pop()
    tree.write_json("test", entries, newline="\r\n")
    _error(ValueError, tree.root,
           rf"^{re.escape(str(tree.test_json))}:3:1: images\[1\] "
           r"\('test/1--Handshaking/1_Handshaking_Handshaking_1_94.jpg'\): targets\[1\]\.attribute "
           r"has 13 values, expected 14 \(one per attribute of attribute_id_map\)$")


@pytest.mark.parametrize("value,shown", [(2, "2"), (True, "true"), (1.0, "1.0"), ("1", '"1"'),
                                         (None, "null")])
def test_attribute_value_outside_one_minus_one_zero(tree, value, shown):
    entries = tree.entries("trainval")
    entries[0]["targets"][0]["attribute"][5] = value
    tree.write_json("trainval", entries)
    _error(ValueError, tree.root,
           rf"^{re.escape(str(tree.trainval_json))}:2:1: images\[0\] \(.*\): targets\[0\]\."
           rf"attribute\[5\] is {re.escape(shown)}, expected 1 \(positive\), -1 \(negative\) "
           r"or 0 \(unspecified\)$")


def test_target_that_is_not_an_object(tree):
    entries = tree.entries("trainval")
    entries[6]["targets"] = [[1, 2]]
    tree.write_json("trainval", entries)
    _error(ValueError, tree.root, rf"{re.escape(str(tree.trainval_json))}:8:1: images\[6\] .*"
                                  r"targets\[0\] must be an object with an 'attribute' list")


def test_scene_id_out_of_range(tree):
    entries = tree.entries("test")
    entries[2]["scene_id"] = 30
    tree.write_json("test", entries)
    _error(ValueError, tree.root,
           rf"^{re.escape(str(tree.test_json))}:4:1: images\[2\] \('test/3--Riot/3_Riot_Riot_3_17"
           r"\.jpg'\): scene_id 30 is not a key of this file's scene_id_map \(ids 0\.\.2, 3 "
           r"scenes\)$")


def test_scene_id_checked_against_the_other_files_map(tree):
    entries = tree.entries("test")
    entries[3]["scene_id"] = 5
    tree.write_json("test", entries)
    tree.test_json.write_text(tree.test_json.read_text().replace(
        ',\n"scene_id_map": ' + json.dumps({str(k): v for k, v in SCENE_MAP.items()}), ""))
    _error(ValueError, tree.root,
           rf"^{re.escape(str(tree.test_json))}:5:1: images\[3\] .*: scene_id 5 is not a key of "
           r"the scene_id_map")


@pytest.mark.parametrize("scene", ["3", 1.0, -1])
def test_scene_id_must_be_an_integer_id(tree, scene):
    entries = tree.entries("trainval")
    entries[1]["scene_id"] = scene
    tree.write_json("trainval", entries, scene_map={0: "a", 1: "b", 2: "c", -1: "x"}
                    if scene == -1 else None)
    tree.write_json("test", tree.entries("test"), scene_map={0: "a", 1: "b", 2: "c", -1: "x"}
                    if scene == -1 else None)
    _error(ValueError, tree.root, rf"{re.escape(str(tree.trainval_json))}:3:1: images\[1\] .*"
                                  r"scene_id.* (must be an integer|must be >= 0)")


@pytest.mark.parametrize("name", ["/abs/x.jpg", "../x.jpg", "train\\\\x.jpg", "", 7])
def test_file_name_must_be_relative_to_image_dir(tree, name):
    entries = tree.entries("trainval")
    entries[0]["file_name"] = name
    tree.write_json("trainval", entries)
    _error(ValueError, tree.root, rf"{re.escape(str(tree.trainval_json))}:2:1: images\[0\]: "
                                  r"'file_name' must be a path relative to Image/")


def test_duplicate_image_in_a_file(tree):
    entries = tree.entries("trainval")
    entries[4]["file_name"] = entries[1]["file_name"]
    tree.write_json("trainval", entries)
    _error(ValueError, tree.root, rf"{re.escape(str(tree.trainval_json))}:6:1: images\[4\] .*"
                                  r"the same file_name as images\[1\]")


def test_image_in_both_files(tree):
    entries = tree.entries("test")
    entries[0]["file_name"] = TRAINVAL[6].file_name
    tree.write_json("test", entries)
    _error(ValueError, tree.root,
           rf"^{re.escape(str(tree.test_json))}:2:1: images\[0\] .* is also listed in "
           rf"{re.escape(str(tree.trainval_json))}:8:1 as images\[6\]")


def test_maps_must_agree_between_the_files(tree):
    names = list(ATTRIBUTE_NAMES)
    names[3] = "cap"
    tree.write_json("test", tree.entries("test"), attribute_names=names)
    _error(ValueError, tree.root, rf"{re.escape(str(tree.test_json))}: attribute_id_map differs "
                                  rf"from the one of {re.escape(str(tree.trainval_json))}")


def test_attribute_id_map_keys_must_be_positions(tree):
    text = tree.trainval_json.read_text().replace('"13": "stripe"', '"14": "stripe"')
    tree.trainval_json.write_text(text)
    _error(ValueError, tree.root, r"'attribute_id_map' keys must be 0\.\.13")


@pytest.mark.parametrize("text,match", [
    ("[]", r"expected one JSON object with an 'images' list .*got a JSON list"),
    ('{"imgs": []}', r"expected one JSON object with an 'images' list .*got an object with "
                     r"keys \['imgs'\]"),
    ('{"images": []}', r"'images' is empty"),
    ('{"images": [3]}', r":1:13: images\[0\]: expected an object"),
])
def test_top_level_structure(tree, text, match):
    tree.test_json.write_text(text)
    _error(ValueError, tree.root, rf"{re.escape(str(tree.test_json))}.*{match}")


def test_image_listed_but_absent(tree):
    (tree.root / "Image" / TRAINVAL[4].file_name).unlink()
    with pytest.raises(FileNotFoundError) as info:
        build_dataset("wider_attribute", tree.root, "train")
    assert str(info.value) == (
        f"1 image file(s) listed in {tree.trainval_json} do not exist under "
        f"{tree.root / 'Image'}, e.g. {tree.trainval_json}:6:1: images[4] -> "
        f"{tree.root / 'Image' / TRAINVAL[4].file_name}")
    # the other split does not list it
    assert len(build_dataset("wider_attribute", tree.root, "test")[0]) == 4


def test_missing_files_are_all_named(tree):
    tree.test_json.unlink()
    _error(FileNotFoundError, tree.root,
           rf"WIDER Attribute files missing under root .*: "
           rf"{re.escape(str(tree.test_json))} \(beside wider_attribute_trainval\.json\)")
    tree.trainval_json.unlink()
    (tree.root / "Image").rename(tree.root / "images")
    message = _error(FileNotFoundError, tree.root, r"wider_attribute_trainval\.json \(looked in "
                                                   r".*wider_attribute_annotation/, .*Anno/\); .*Image/")
    assert "Expected the official layout: wider_attribute_annotation/wider_attribute_trainval" \
           ".json, wider_attribute_annotation/wider_attribute_test.json and Image/" in message


def test_folder_above_the_release_is_read_from_it(tree, capsys):
    top = tree.root.parent  # holds only wider_attribute/, as an archive's top folder would
    dataset, info, num_classes = build_dataset("wider_attribute", top, "train")
    assert num_classes == 3 and info.labels.tolist() == TRAIN_LABELS
    assert info.root == str(tree.root) and info.paths == ["Image/" + i.file_name for i in TRAINVAL]
    assert dataset.files == [tree.root / "Image" / img.file_name for img in TRAINVAL]
    open_split(OmegaConf.create({"dataset": "wider_attribute", "train_path": str(top)}), "test")
    assert f"wider_attribute test: 4 images, 3 classes, 14 attributes [dataset folder " \
           f"{tree.root}]" in capsys.readouterr().out


def test_root_pointing_inside_the_dataset_gets_a_hint(tree):
    _error(FileNotFoundError, tree.root / "Image", r"looks like a folder inside the dataset: "
                                                   r"data\.train_path must be its parent")
    _error(FileNotFoundError, tree.root / "nope", r"is not a directory")


@pytest.mark.parametrize("folder", [".", "Annotations", "Anno"])
def test_other_annotation_folders(tree, folder):
    target = tree.root / folder
    target.mkdir(exist_ok=True)
    for path in (tree.trainval_json, tree.test_json):
        path.rename(target / path.name)
    tree.annotation_dir.rmdir()
    meta = read_wider(tree.root)
    assert meta.annotation_dir == (tree.root if folder == "." else target)
    assert meta.labels.tolist() == TRAIN_LABELS + TEST_LABELS


def test_read_wider_annotations_of_one_file(tree):
    ann = read_wider_annotations(tree.test_json)
    assert ann.file_names == [img.file_name for img in TEST]
    assert ann.scene_names == SCENE_MAP and ann.attribute_names == ATTRIBUTE_NAMES
    assert np.array_equal(ann.attributes, bits(TEST))
    assert ann.where(3) == f"{tree.test_json}:5:1"
    with pytest.raises(FileNotFoundError, match="annotation file .*missing.json does not exist"):
        read_wider_annotations(tree.root / "missing.json")


# ---- through the runner's entry point ----

def test_open_split_prints_counts_and_wraps_errors(tree, capsys):
    data = OmegaConf.create({"dataset": "wider_attribute", "train_path": str(tree.root),
                             "verify_images": "auto"})
    opened = open_split(data, "train", verify=True)
    assert opened.num_classes == 3 and opened.info.num_samples == 7
    out = capsys.readouterr().out
    assert f"[clinfonce] wider_attribute train: 7 images, 3 classes, 14 attributes " \
           f"(from {tree.root})" in out
    entries = tree.entries("trainval")
    entries[2]["targets"][0]["attribute"][0] = 9
    tree.write_json("trainval", entries)
    with pytest.raises(DataError, match=rf"^data\.dataset=wider_attribute: "
                                        rf"{re.escape(str(tree.trainval_json))}:4:1: images\[2\]"):
        open_split(data, "test")


# ---- the Cl-InfoNCE preprocessed csv files key these images ----

def test_clinfonce_csv_paths_match_through_the_precomputed_provider(tree, tmp_path):
    # data_processing/Wider/rank_H/meta_data_train.csv: pandas index, label_gran_<k>..., class,
    # path relative to Image/ ("train/..." and "val/..."), then a summary row with index -1
    gran2 = [5, 5, 9, 7, 7, 9, 5]  # per TRAINVAL image
    rows = [",label_gran_1,label_gran_2,class,path"]
    for n, k in enumerate(reversed(range(7))):  # rows in another order than the json's
        rows.append(f"{n},0,{gran2[k]},{TRAIN_LABELS[k]},{TRAINVAL[k].file_name}")
    rows.append("-1,1,3,3,7")
    csv = tmp_path / "meta_data_train.csv"
    csv.write_text("\n".join(rows) + "\n")
    info = build_dataset("wider_attribute", tree.root, "train")[1]
    provider = build_provider("precomputed", info, file=str(csv), k=2)
    assert provider.ids.tolist() == [0, 0, 2, 1, 1, 2, 0]  # 5 -> 0, 7 -> 1, 9 -> 2

    # meta_data_val.csv: pandas index, path ("test/..."), class
    val_rows = [",path,class"] + [f"{n},{img.file_name},{c}" for n, (img, c) in
                                  enumerate(zip(TEST, TEST_LABELS))] + ["-1,4,3"]
    val_csv = tmp_path / "meta_data_val.csv"
    val_csv.write_text("\n".join(val_rows) + "\n")
    test_info = build_dataset("wider_attribute", tree.root, "test")[1]
    provider = build_provider("precomputed", test_info, file=str(val_csv), column="class")
    assert provider.ids.tolist() == TEST_LABELS
