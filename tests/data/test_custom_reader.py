"""The custom reader: class or flat image folders with an optional annotations CSV.

Every fixture is written here (tiny PNG/JPEG files and CSV text); the expected labels,
paths and binary attribute tables are spelled out by hand."""
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from clinfonce_plugin.clusters.registry import build_provider
from clinfonce_plugin.data.custom import IMG_EXTENSIONS, read_annotations
from clinfonce_plugin.data.registry import DATASET_OPTIONS, build_dataset, open_split, require_labels
from clinfonce_plugin.errors import DataError


def image(path: Path, color=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), color).save(path)  # format from the extension: PNG or JPEG


def tree(root: Path, files) -> Path:
    for i, rel in enumerate(files):
        image(root / rel, (i * 20 % 256, 0, 0))
    return root


def write(path: Path, text: str, newline="\n", bom=False) -> Path:
    data = text.replace("\n", newline).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def read(root, split="train", **options):
    return build_dataset("custom", root, split, **options)


# ----------------------------------------------------------------------------- folders
def test_image_extensions_are_torchvisions():
    folder = pytest.importorskip("torchvision.datasets.folder")
    assert IMG_EXTENSIONS == folder.IMG_EXTENSIONS


def test_class_folders_match_torchvision_image_folder(tmp_path):
    files = ["zebra/b.png", "zebra/a.jpg", "ant/x/2.png", "ant/x/1.PNG", "ant/a0.png",
             "ant/a.png", "mole/only.jpeg"]
    root = tree(tmp_path / "data", files)
    (root / "ant" / "notes.txt").write_text("not an image")
    ds, info, n = read(root)
    # hand order: classes by name; files of a class in ImageFolder order (a folder's files
    # before its subfolders', names sorted)
    expected = ["ant/a.png", "ant/a0.png", "ant/x/1.PNG", "ant/x/2.png", "mole/only.jpeg",
                "zebra/a.jpg", "zebra/b.png"]
    assert info.paths == expected and n == 3
    assert info.class_names == ["ant", "mole", "zebra"]
    assert info.labels.tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert [str(f) for f in ds.files] == [str(root / p) for p in expected]
    assert info.root == str(root) and info.attributes is None
    datasets = pytest.importorskip("torchvision.datasets")
    reference = datasets.ImageFolder(str(root))
    assert reference.classes == info.class_names
    assert [(os.path.relpath(p, root), y) for p, y in reference.samples] == \
        list(zip(expected, info.labels.tolist()))
    img, target = ds[4]
    assert img.mode == "RGB" and img.size == (6, 6) and target == 1


def test_hidden_entries_are_skipped(tmp_path):
    root = tree(tmp_path / "d", ["a/1.png", "b/2.png", ".ipynb_checkpoints/x.png",
                                 "a/.hidden.png", "a/.cache/y.png"])
    _, info, n = read(root)
    assert info.paths == ["a/1.png", "b/2.png"] and n == 2


def test_flat_folder_has_no_labels(tmp_path):
    root = tree(tmp_path / "flat", ["b.jpg", "a.png", "c.webp"])
    (root / "README.txt").write_text("x")
    (root / "meta").mkdir()  # a folder without images is not a class folder
    ds, info, n = read(root)
    assert info.paths == ["a.png", "b.jpg", "c.webp"]
    assert info.labels.tolist() == [-1, -1, -1] and info.class_names is None and n == 0
    assert ds[0][1] == -1


def test_root_mixing_images_and_class_folders_is_an_error(tmp_path):
    root = tree(tmp_path / "mixed", ["top.png", "cls/a.png"])
    with pytest.raises(ValueError, match=rf"data.train_path '{root}' mixes 1 image file\(s\) "
                                         r"\(e.g. 'top.png'\) with 1 folder\(s\) of images "
                                         r"\(e.g. 'cls'\); expected either"):
        read(root)


def test_empty_class_folder_and_missing_root_are_errors(tmp_path):
    root = tree(tmp_path / "d", ["a/1.png"])
    (root / "b").mkdir()
    (root / "b" / "1.heic").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"class folder 'b' holds no image \(extensions"):
        read(root)
    with pytest.raises(FileNotFoundError, match=r"data.train_path '.*nowhere' is not a directory"):
        read(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image"):
        read(tmp_path / "empty")


# ----------------------------------------------------------------------------- the CSV
ATTR_FILES = ["i0.png", "i1.png", "i2.png", "i3.png", "sub/i4.png"]
ATTR_CSV = """path,label,wing,color,tags,size
i0.png,crow,1,red,a;b,10
i1.png,swan,0,blue,b,2
sub/i4.png,crow,1,red,c ; a,2
i2.png,swan,0,green,a,10
"""
# hand-binarised: wing binary; color categorical (blue, green, red); tags multi-valued
# (a, b, c); size categorical with integer values ordered numerically (2 before 10)
ATTR_NAMES = ["wing", "color::blue", "color::green", "color::red", "tags::a", "tags::b",
              "tags::c", "size::2", "size::10"]
ATTR_TABLE = [[1, 0, 0, 1, 1, 1, 0, 0, 1],
              [0, 1, 0, 0, 0, 1, 0, 1, 0],
              [1, 0, 0, 1, 1, 0, 1, 1, 0],
              [0, 0, 1, 0, 1, 0, 0, 0, 1]]


def test_csv_attributes_are_binarised_by_hand_table(tmp_path):
    root = tree(tmp_path / "flat", ATTR_FILES)
    csv = write(tmp_path / "ann.csv", ATTR_CSV)
    ds, info, n = read(root, annotations=str(csv))
    assert info.paths == ["i0.png", "i1.png", "sub/i4.png", "i2.png"]  # CSV order, i3 unlisted
    assert len(ds) == 4 and ds.files[2] == root / "sub" / "i4.png"
    assert info.attribute_names == ATTR_NAMES
    assert info.attributes.dtype == np.uint8 and info.attributes.tolist() == ATTR_TABLE
    assert info.class_names == ["crow", "swan"] and info.labels.tolist() == [0, 1, 0, 1] and n == 2
    assert "wing (binary), color (categorical, 3 values), tags (multi-valued, 3 values), " \
           "size (categorical, 2 values) -> 9 binary" in info.extra["layout"]


def test_the_example_of_the_docs(tmp_path):
    # docs/datasets.md, section custom: the CSV and the table written there
    root = tree(tmp_path / "images", ["gull/01.png", "gull/02.jpg", "tern/07.png"])
    csv = write(tmp_path / "a.csv", "path,label,split,stripes,color,tags\n"
                "gull/01.png,gull,train,1,grey,sea;rock\ngull/02.jpg,gull,test,0,white,sea\n"
                "tern/07.png,tern,train,1,white,rock\n")
    _, tr, _ = read(root, annotations=str(csv))
    _, te, _ = read(root, "test", annotations=str(csv), train_path=str(root))
    assert tr.class_names == ["gull", "tern"] and tr.labels.tolist() == [0, 1]
    assert tr.attribute_names == ["stripes", "color::grey", "color::white", "tags::rock",
                                  "tags::sea"]
    assert tr.paths == ["gull/01.png", "tern/07.png"] and te.paths == ["gull/02.jpg"]
    assert tr.attributes.tolist() == [[1, 1, 0, 1, 1], [1, 0, 1, 1, 0]]
    assert te.attributes.tolist() == [[0, 0, 1, 0, 1]] and te.labels.tolist() == [0]


def test_attributes_provider_reads_the_csv_attributes(tmp_path):
    root = tree(tmp_path / "flat", ATTR_FILES)
    _, info, _ = read(root, annotations=str(write(tmp_path / "a.csv", ATTR_CSV)))
    # entropies in bits by hand (ones out of 4 rows): wing 1, color::blue .811,
    # color::green .811, color::red 1, tags::a .811, tags::b 1, tags::c .811, size::2 1,
    # size::10 1 -> top-2 = wing, color::red (ties go to the lower column index)
    p = build_provider("attributes", info, k=2)
    assert p.selected_attributes == ["wing", "color::red"]
    # wing and color::red are equal on every row: rows (1,1), (0,0), (1,1), (0,0)
    assert p.ids.tolist() == [1, 0, 1, 0]


def test_split_column_gives_both_splits_with_the_same_attributes(tmp_path):
    root = tree(tmp_path / "d", ["cat/1.png", "cat/2.png", "dog/1.png", "dog/2.png"])
    csv = write(tmp_path / "ann.csv", "path,split,color\ncat/1.png,train,red\n"
                "dog/1.png,test,blue\ncat/2.png,test,red\ndog/2.png,train,green\n")
    _, tr, n_tr = read(root, "train", annotations=str(csv))
    _, te, n_te = read(root, "test", annotations=str(csv), train_path=str(root))
    # no label column: classes from the paths' folders
    assert tr.paths == ["cat/1.png", "dog/2.png"] and tr.labels.tolist() == [0, 1]
    assert te.paths == ["dog/1.png", "cat/2.png"] and te.labels.tolist() == [1, 0]
    assert tr.class_names == te.class_names == ["cat", "dog"] and n_tr == n_te == 2
    assert tr.attribute_names == te.attribute_names == ["color::blue", "color::green", "color::red"]
    assert tr.attributes.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert te.attributes.tolist() == [[1, 0, 0], [0, 0, 1]]
    _, every, _ = read(root, "all", annotations=str(csv))
    assert every.num_samples == 4
    # a test split read with root = data.val_path set to the training folder: the same rows
    _, again, _ = read(str(root) + "/", "val", annotations=str(csv), train_path=str(root))
    assert again.paths == te.paths


def test_label_column_overrides_folders(tmp_path):
    root = tree(tmp_path / "d", ["cat/1.png", "dog/1.png"])
    csv = write(tmp_path / "a.csv", "label,path\nzz,cat/1.png\naa,dog/1.png\n")
    _, info, n = read(root, annotations=str(csv))
    assert info.class_names == ["aa", "zz"] and info.labels.tolist() == [1, 0] and n == 2


def test_csv_on_a_flat_folder_without_labels_and_relative_lookup(tmp_path):
    root = tree(tmp_path / "flat", ["a.png", "b.png"])
    write(root / "ann.csv", "path,shiny\na.png,1\nb.png,0\n")
    _, info, n = read(root, annotations="ann.csv")  # found under the root
    assert info.labels.tolist() == [-1, -1] and info.class_names is None and n == 0
    assert info.attribute_names == ["shiny"] and info.attributes.tolist() == [[1], [0]]


def test_val_path_folder_is_indexed_by_training_classes(tmp_path):
    train = tree(tmp_path / "train", ["b/1.png", "c/1.png", "a/1.png"])
    val = tree(tmp_path / "val", ["c/9.png", "a/9.png"])  # a subset of the classes
    _, info, n = read(val, "test", train_path=str(train))
    assert info.paths == ["a/9.png", "c/9.png"] and info.labels.tolist() == [0, 2]
    assert info.class_names == ["a", "b", "c"] and n == 3 and info.root == str(val)
    odd = tree(tmp_path / "odd", ["a/1.png", "zebra/1.png"])
    with pytest.raises(ValueError, match=r"data.val_path '.*odd': class folder 'zebra' is not "
                                         r"a training class \(the class folders of .*train'"):
        read(odd, "test", train_path=str(train))
    flat = tree(tmp_path / "flatval", ["x.png"])
    _, info, _ = read(flat, "test", train_path=str(train))
    assert info.labels.tolist() == [-1]
    # with a CSV without a split column, its label names index the test folder
    csv = write(tmp_path / "a.csv", "path,label\nb/1.png,c\nc/1.png,a\na/1.png,a\n")
    _, info, n = read(val, "test", annotations=str(csv), train_path=str(train))
    assert info.class_names == ["a", "c"] and info.labels.tolist() == [0, 1] and n == 2


def test_no_test_split_names_val_path_and_split_column(tmp_path):
    root = tree(tmp_path / "d", ["a/1.png"])
    with pytest.raises(ValueError, match=r"no test split for .*: data.val_path is not set "
                                         r"\(or equals data.train_path\) and no "
                                         r"data.annotations with a 'split' column"):
        read(root, "test", train_path=str(root))
    csv = write(tmp_path / "a.csv", "path\na/1.png\n")
    with pytest.raises(ValueError, match=rf"data.annotations '{csv}' has no 'split' column; "
                                         r"set data.val_path to a test folder"):
        read(root, "test", annotations=str(csv), train_path=str(root))
    split = write(tmp_path / "s.csv", "path,split\na/1.png,test\n")
    other = tree(tmp_path / "other", ["a/2.png"])
    with pytest.raises(ValueError, match=r"data.val_path '.*other' is set, but data.annotations"
                                         r" .* has a 'split' column"):
        read(other, "test", annotations=str(split), train_path=str(root))
    with pytest.raises(ValueError, match=rf"{split}: no row has split 'train'"):
        read(root, "train", annotations=str(split))


def test_crlf_and_bom_files_parse(tmp_path):
    root = tree(tmp_path / "flat", ["a.png", "b.png"])
    for i, (newline, bom) in enumerate([("\r\n", True), ("\r\n", False), ("\n", True)]):
        csv = write(tmp_path / f"{i}.csv", "path,label,split\na.png,x,train\n\nb.png,y,test\n",
                    newline, bom)
        ann = read_annotations(csv, root)
        assert ann.paths == ["a.png", "b.png"] and ann.labels == ["x", "y"]
        assert ann.splits == ["train", "test"] and ann.lines == [2, 4]


# ----------------------------------------------------------------------------- malformed
@pytest.fixture
def flat(tmp_path):
    return tree(tmp_path / "flat", ["a.png", "b.png", "c.png"])


@pytest.mark.parametrize("text, pattern", [
    ("label,split\nx,train\n", r":1: no column 'path' in the header \['label', 'split'\]; "
                               r"expected a header line with a 'path' column"),
    ("path;label\na.png;x\n", r":1: no column 'path' .*\(fields must be separated by commas\)"),
    ("path,color\na.png,red\nb.png\n", r":3: 1 fields, expected 2 \(the header's columns "
                                       r"\['path', 'color'\]\)"),
    ("path,split\na.png,train\nb.png,val\n", r":3: column 'split': 'val', expected 'train' "
                                             r"or 'test'"),
    ("path\na.png\nmissing.png\n", r":3: column 'path': '.*missing.png' does not exist, "
                                   r"expected an image file relative to data.train_path"),
    ("path\na.png\n./a.png\n", r":3: column 'path': './a.png' is listed a second time "
                               r"\(first at line 2\), expected each image once"),
    ("path\n../flat/a.png\n", r":2: column 'path': '../flat/a.png' leads outside the root"),
    ("path\n/etc/passwd\n", r":2: column 'path': '/etc/passwd' is an absolute path"),
    ("path,label\n,x\n", r":2: column 'path': empty, expected an image file"),
    ("path,color\na.png,red\nb.png,\n", r":3: column 'color': empty, expected a value"),
    ("path,tags\na.png,x;;y\n", r":2: column 'tags': empty value in 'x;;y', expected values "
                                r"separated by ';'"),
    ("path,label\na.png,\n", r":2: column 'label': empty, expected a class name"),
    ("path,c,c\na.png,1,0\n", r":1: column 'c' appears twice in the header"),
    ("path,,c\na.png,1,0\n", r":1: column 2 of the header has no name"),
    ("path\n", r":1: a header and no image line"),
    ("", r": empty; expected a header line"),
    ("path,label\nsub/a.png,x\n", r":2: column 'path': '.*sub/a.png' does not exist"),
])
def test_malformed_csv_names_file_line_and_column(flat, tmp_path, text, pattern):
    csv = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=rf"^{csv}{pattern}"):
        read(flat, annotations=str(csv))


def test_identifier_columns_and_name_clashes_are_refused(flat, tmp_path, monkeypatch):
    import clinfonce_plugin.data.custom as custom

    monkeypatch.setattr(custom, "MAX_BINARY_CELLS", 8)  # 3 rows x 3 values = 9 cells
    csv = write(tmp_path / "id.csv", "path,photo_id,kind\na.png,p1,x\nb.png,p2,y\nc.png,p3,x\n")
    with pytest.raises(ValueError, match=rf"^{csv}: column 'photo_id': 3 distinct values over 3 "
                                         r"rows would make 3 binary columns .*remove the column"):
        read(flat, annotations=str(csv))
    clash = write(tmp_path / "c.csv", "path,c,c::x\na.png,x,1\nb.png,y,0\n")
    with pytest.raises(ValueError, match=rf"^{clash}:1: the binarised attribute 'c::x' comes from "
                                         r"two columns"):
        read(flat, annotations=str(clash))


def test_paths_mixing_class_folders_and_top_level_need_a_label_column(tmp_path):
    root = tree(tmp_path / "d", ["a/1.png", "top.png"])
    csv = write(tmp_path / "m.csv", "path\na/1.png\ntop.png\n")
    with pytest.raises(ValueError, match=rf"^{csv}:3: column 'path': 'top.png' is not in a class "
                                         r"folder while line 2's 'a/1.png' is in one"):
        read(root, annotations=str(csv))
    _, info, _ = read(root, annotations=str(write(tmp_path / "l.csv",
                                                  "path,label\na/1.png,p\ntop.png,q\n")))
    assert info.labels.tolist() == [0, 1]


def test_missing_csv_and_non_utf8_csv(flat, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.annotations 'nope.csv' not found; looked in"):
        read(flat, annotations="nope.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("path,label\na.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^{bad}: not UTF-8 text"):
        read(flat, annotations=str(bad))


def test_open_split_turns_reader_errors_into_one_data_error(flat, tmp_path, capsys):
    csv = write(tmp_path / "bad.csv", "path,split\na.png,train\nb.png,dev\n")
    cfg = OmegaConf.create({"dataset": "custom", "train_path": str(flat), "annotations": str(csv)})
    assert DATASET_OPTIONS["custom"] == ("annotations", "train_path")
    with pytest.raises(DataError, match=rf"^data.dataset=custom: {csv}:3: column 'split'"):
        open_split(cfg, "train")
    cfg.annotations = None
    opened = open_split(cfg, "train")
    out = capsys.readouterr().out
    assert "custom train: 3 images, 0 classes, 0 labelled [flat folder, no labels]" in out
    with pytest.raises(DataError, match=r"linear evaluation needs a label for every image, but "
                                        r"here has no labels: put the images in class folders"):
        require_labels(opened, "linear evaluation", "here")


# ----------------------------------------------------------------------------- providers
def test_hierarchy_provider_places_csv_label_names(tmp_path):
    root = tree(tmp_path / "d", ["1.png", "2.png", "3.png", "4.png"])
    csv = write(tmp_path / "a.csv", "path,label\n1.png,cat\n2.png,oak\n3.png,dog\n4.png,cat\n")
    write(root / "pairs.txt", "living animal\nliving plant\nanimal cat\nanimal dog\nplant oak\n")
    _, info, _ = read(root, annotations=str(csv))
    assert info.class_names == ["cat", "dog", "oak"]
    level2 = build_provider("hierarchy", info, pairs_file="pairs.txt", level=2)  # under the root
    assert level2.ids.tolist() == [0, 1, 0, 0]  # animal, plant, animal, animal
    assert level2.cluster_names == ["animal", "plant"]
    level3 = build_provider("hierarchy", info, pairs_file="pairs.txt", level=3)
    assert level3.ids.tolist() == [0, 2, 1, 0]  # the classes themselves


@pytest.mark.parametrize("provider, params", [("labels", {}),
                                              ("hierarchy", {"pairs": [["r", "x"]], "level": 2})])
def test_label_providers_refuse_unlabelled_data(flat, provider, params):
    _, info, _ = read(flat)
    with pytest.raises(ValueError, match=rf"{provider}: no sample has a label \(all 3 are -1, "
                                         r"unknown\), so every image would be a cluster of its "
                                         r"own \(SimCLR\); label the images"):
        build_provider(provider, info, **params)
    assert build_provider("instance", info).num_clusters == 3
