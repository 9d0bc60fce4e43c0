"""The UT-Zappos50K reader against a tiny release in the official layout (tests/data/
utzappos_fixture.py), the Cl-InfoNCE split, the precomputed cluster files, and malformed
variants of every file."""
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from clinfonce_plugin.clusters.precomputed import PrecomputedProvider
from clinfonce_plugin.data.registry import build_dataset, open_split
from clinfonce_plugin.data.utzappos import read_utzappos, split_rows
from tests.data.utzappos_fixture import (ATTRIBUTE_NAMES, CLASS_NAMES, LABELS, ONES, ORDER,
                                         ROWS, image_path, meta_line, precomputed_csv,
                                         replace_line, write_release)

# np.random.RandomState(0).permutation(10): the recipe of the Cl-InfoNCE split on 10 rows
PERM_SEED0 = [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]
# The first and last rows of the official data_processing/UT-zappos50K/rank_H files
# (github.com/Crazy-Jack/Cl-InfoNCE): the pandas index of meta_data_train.csv and
# meta_data_val.csv, i.e. the rows (numeric CID order) of the official split.
OFFICIAL_TRAIN_HEAD = [34021, 18675, 37333, 43590, 35554, 13971, 8719, 45169, 49023, 10743]
OFFICIAL_TRAIN_TAIL = [24963, 18652]
OFFICIAL_VAL_HEAD = [32323, 8531]
OFFICIAL_VAL_TAIL = [2732]


@pytest.fixture
def release(tmp_path):
    return write_release(tmp_path / "ut-zap50k")


def expected_attributes(cids):
    return np.array([[int(name in ONES[c]) for name in ATTRIBUTE_NAMES] for c in cids],
                    dtype=np.uint8)


# ----------------------------------------------------------------------------- values


def test_rows_labels_and_attributes_match_the_hand_computed_values(release):
    meta = read_utzappos(release)
    assert meta.cids == ORDER  # numeric (product, colour) order, not file or string order
    assert meta.class_names == CLASS_NAMES
    assert meta.labels.tolist() == LABELS
    assert meta.attribute_names == ATTRIBUTE_NAMES and meta.attributes.dtype == np.uint8
    np.testing.assert_array_equal(meta.attributes, expected_attributes(ORDER))
    assert meta.paths == [image_path(c) for c in ORDER]
    assert meta.lines.tolist() == [meta_line(c) for c in ORDER]
    # every meta-data-bin.csv column of the 7 attributes was compared
    assert len(meta.bin_checked) == len(ATTRIBUTE_NAMES) and meta.bin_ignored == []


def test_train_and_test_split_follow_the_seeded_permutation(release):
    train, info, num_classes = build_dataset("utzappos", release, "train", split_seed=0)
    test, test_info, _ = build_dataset("utzappos", release, "test", split_seed=0)
    assert num_classes == 5 and len(train) == 7 and len(test) == 3  # int(0.7 * 10) = 7
    assert info.extra["cids"] == [ORDER[i] for i in PERM_SEED0[:7]]
    assert test_info.extra["cids"] == [ORDER[i] for i in PERM_SEED0[7:]]
    assert info.labels.tolist() == [LABELS[i] for i in PERM_SEED0[:7]]
    np.testing.assert_array_equal(info.attributes,
                                  expected_attributes([ORDER[i] for i in PERM_SEED0[:7]]))
    assert info.paths == [image_path(ORDER[i]) for i in PERM_SEED0[:7]]
    assert info.class_names == CLASS_NAMES and info.root == str(release)
    assert [train[i][1] for i in range(7)] == info.labels.tolist()


def test_split_reproduces_the_official_cl_infonce_split():
    train, test = split_rows(50025, 0)
    assert len(train) == 35017 and len(test) == 15008
    assert train[:10].tolist() == OFFICIAL_TRAIN_HEAD
    assert train[-2:].tolist() == OFFICIAL_TRAIN_TAIL
    assert test[:2].tolist() == OFFICIAL_VAL_HEAD and test[-1:].tolist() == OFFICIAL_VAL_TAIL
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(50025))


@pytest.mark.parametrize("n", [10, 11, 1000, 50025])
def test_split_is_a_7_3_partition_and_depends_only_on_the_seed(n):
    train, test = split_rows(n, 3)
    assert len(train) == int(0.7 * n) and len(train) + len(test) == n
    assert not set(train.tolist()) & set(test.tolist())
    again = split_rows(n, 3)
    assert train.tolist() == again[0].tolist() and test.tolist() == again[1].tolist()
    assert train.tolist() != split_rows(n, 4)[0].tolist()


def test_split_seed_is_required(release):
    with pytest.raises(ValueError, match="data.split_seed must be a non-negative integer, "
                                         "got None"):
        build_dataset("utzappos", release, "train")
    with pytest.raises(ValueError, match="got -1"):
        split_rows(10, -1)


def test_all_split_and_bool_split(release):
    _, info, _ = build_dataset("utzappos", release, "all", split_seed=0)
    assert info.extra["cids"] == ORDER
    _, info, _ = build_dataset("utzappos", release, False, split_seed=0)
    assert info.extra["cids"] == [ORDER[i] for i in PERM_SEED0[7:]]
    with pytest.raises(ValueError, match="unknown UT-Zappos50K split 'dev'"):
        build_dataset("utzappos", release, "dev", split_seed=0)


def test_images_are_rescaled_to_32x32_and_come_from_their_row(release):
    dataset, info, _ = build_dataset("utzappos", release, "all", split_seed=0)
    for i, cid in enumerate(ORDER):
        image, target = dataset[i]
        assert image.size == (32, 32) and image.mode == "RGB"
        assert target == LABELS[i]
        row = [r[0] for r in ROWS].index(cid)
        assert abs(image.getpixel((16, 16))[0] - 10 * row) <= 3  # the colour of its file


def test_original_non_square_images_are_padded_on_white(tmp_path):
    root = write_release(tmp_path / "z", square=False)
    dataset, info, _ = build_dataset("utzappos", root, "all", split_seed=0)
    assert info.paths[0] == image_path(ORDER[0]).replace("ut-zap50k-images-square",
                                                         "ut-zap50k-images")
    image, _ = dataset[0]  # 20x15 file: 2.5 white rows above and below before resizing
    assert image.size == (32, 32)
    assert image.getpixel((16, 0)) == (255, 255, 255)
    assert image.getpixel((16, 31)) == (255, 255, 255)
    assert abs(image.getpixel((16, 16))[2] - 200) <= 3


def test_open_split_prints_the_counts(release, capsys):
    cfg = OmegaConf.create({"dataset": "utzappos", "train_path": str(release),
                            "split_seed": 0, "verify_images": "auto"})
    open_split(cfg, "train", verify=True)
    assert (f"utzappos train: 7 images, 5 classes, {len(ATTRIBUTE_NAMES)} attributes "
            f"(from {release})") in capsys.readouterr().out


def test_crlf_and_bom_files_read_the_same(tmp_path, release):
    other = write_release(tmp_path / "crlf", crlf_bom=True)
    assert (other / "ut-zap50k-data/meta-data.csv").read_bytes().startswith(b"\xef\xbb\xbfCID")
    assert b"\r\n" in (other / "ut-zap50k-data/meta-data-bin.csv").read_bytes()
    a, b = read_utzappos(release), read_utzappos(other)
    assert a.cids == b.cids and a.attribute_names == b.attribute_names
    np.testing.assert_array_equal(a.attributes, b.attributes)
    assert len(b.bin_checked) == len(ATTRIBUTE_NAMES)


def test_meta_data_bin_is_optional(tmp_path):
    root = write_release(tmp_path / "z", with_bin=False)
    meta = read_utzappos(root)
    np.testing.assert_array_equal(meta.attributes, expected_attributes(ORDER))
    assert meta.bin_checked == []


def test_unmatched_bin_columns_are_listed_not_compared(release):
    path = release / "ut-zap50k-data/meta-data-bin.csv"
    lines = path.read_text().splitlines()
    lines = [lines[0] + ",HeelHeight.NA"] + [line + ",0" for line in lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    meta = read_utzappos(release)
    assert meta.bin_ignored == ["HeelHeight.NA"]


# ----------------------------------------------------------------------------- precomputed


def test_cl_infonce_cluster_file_loads_through_the_precomputed_provider(release, tmp_path):
    _, info, _ = build_dataset("utzappos", release, "train", split_seed=0)
    train = info.extra["cids"]
    # raw ids as the published files hold them: any integers, one row per training image
    raw = {cid: {"class": LABELS[ORDER.index(cid)], "label_gran_3": 40 + 7 * (i % 3),
                 "label_gran_5": 100 + i} for i, cid in enumerate(train)}
    order = list(reversed(train))  # rows in another order than the dataset's
    path = tmp_path / "meta_data_train.csv"
    precomputed_csv(path, raw, order)
    text = path.read_text().splitlines()
    assert text[0] == ",path,class,label_gran_3,label_gran_5"
    assert text[1].startswith(f"{ORDER.index(order[0])},{image_path(order[0]).split('/', 1)[1]},")
    assert text[-1].startswith("-1,num_per_label_gran,")

    ids = PrecomputedProvider(info, file=str(path), k=3).ids
    expected = {40: 0, 47: 1, 54: 2}  # the raw ids remapped to 0..K-1 in ascending order
    assert ids.tolist() == [expected[raw[cid]["label_gran_3"]] for cid in train]
    ids = PrecomputedProvider(info, file=str(path), column="class").ids
    classes = sorted({LABELS[ORDER.index(c)] for c in train})
    assert ids.tolist() == [classes.index(LABELS[ORDER.index(c)]) for c in train]


# ----------------------------------------------------------------------------- errors


def test_missing_meta_data_names_the_expected_layout(release):
    (release / "ut-zap50k-data/meta-data.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing under .*: ut-zap50k-data/"
                                                r"meta-data.csv; expected .*ut-zap50k-images-square/"):
        read_utzappos(release)


def test_missing_image_folder_and_image_folder_given_as_root(release):
    shutil.rmtree(release / "ut-zap50k-images-square")
    with pytest.raises(FileNotFoundError, match="ut-zap50k-images-square/ or ut-zap50k-images/"):
        read_utzappos(release)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        read_utzappos(release / "nowhere")


def test_root_pointing_at_the_image_folder_gets_a_hint(release):
    with pytest.raises(FileNotFoundError, match="looks like an image folder itself: set "
                                                "data.train_path to the directory"):
        read_utzappos(release / "ut-zap50k-images-square")


def test_folder_above_the_release_is_read_from_it(release, capsys):
    # an archive that adds a top folder: train_path/ut-zap50k/{ut-zap50k-data, ...-square}
    top = release.parent
    meta = read_utzappos(top)
    assert meta.root == release and meta.cids == ORDER and meta.labels.tolist() == LABELS
    assert meta.paths == [image_path(c) for c in ORDER]
    cfg = OmegaConf.create({"dataset": "utzappos", "train_path": str(top), "split_seed": 0})
    opened = open_split(cfg, "test")
    assert opened.info.root == str(release)
    assert opened.dataset.files[0] == release / image_path(ORDER[PERM_SEED0[7]])
    assert f"utzappos test: 3 images, 5 classes, {len(ATTRIBUTE_NAMES)} attributes " \
           f"[dataset folder {release}] (from {top})" in capsys.readouterr().out


def test_folder_above_two_releases_is_refused(release):
    shutil.copytree(release / "ut-zap50k-data", release.parent / "other" / "ut-zap50k-data")
    with pytest.raises(FileNotFoundError, match=r"UT-Zappos50K: .* holds no dataset itself and "
                                                r"several folders inside it do \(other/, "
                                                r"ut-zap50k/\)"):
        read_utzappos(release.parent)


def test_wrong_header(release):
    path = release / "ut-zap50k-data/meta-data.csv"
    replace_line(path, 1, "CID,Category,SubCategory,HeelHeight")
    with pytest.raises(ValueError, match=rf"{path}:1: expected the header CID,Category,"
                                         r"SubCategory,HeelHeight,Insole,.* got CID,Category,"
                                         r"SubCategory,HeelHeight$"):
        read_utzappos(release)


def test_wrong_column_count(release):
    path = release / "ut-zap50k-data/meta-data.csv"
    line = meta_line("99999-3")
    replace_line(path, line, "99999-3,Boots,Ankle,,,Zipper,Women,Suede")
    with pytest.raises(ValueError, match=rf"{path}:{line}: expected 9 comma-separated fields "
                                         r"\(CID,Category,.*\), got 8"):
        read_utzappos(release)


def test_bad_cid(release):
    path = release / "ut-zap50k-data/meta-data.csv"
    line = meta_line("12-2")
    replace_line(path, line, "12.2,Sandals,Flat,Flat,,Buckle,Women,,Open Toe")
    with pytest.raises(ValueError, match=rf"{path}:{line}:1: column CID must be "
                                         r"'<product id>-<colour id>'.*got '12.2'"):
        read_utzappos(release)


def test_duplicate_cid(release):
    path = release / "ut-zap50k-data/meta-data.csv"
    line = meta_line("12-2")
    replace_line(path, line, "12-1,Sandals,Flat,Flat,,Buckle,Women,,Open Toe")
    with pytest.raises(ValueError, match=rf"{path}:{line}: CID 12-1 already given on line "
                                         rf"{meta_line('12-1')}"):
        read_utzappos(release)


def test_bad_sub_category_value(release):
    path = release / "ut-zap50k-data/meta-data.csv"
    line = meta_line("12-2")
    replace_line(path, line, "12-2,Sandals,,Flat,,Buckle,Women,,Open Toe")
    with pytest.raises(ValueError, match=rf"{path}:{line}:3: column SubCategory must hold "
                                         r"exactly one value, got ''"):
        read_utzappos(release)


def test_unknown_cid_without_image(release):
    path = release / "ut-zap50k-data/meta-data.csv"
    with open(path, "a") as f:
        f.write("555-1,Shoes,Oxfords,Flat,,Lace up,Men,Leather,Wingtip\n")
    with pytest.raises(FileNotFoundError, match=rf"{path}:{len(ROWS) + 2}: no image for CID "
                                                r"555-1 \(expected .*ut-zap50k-images-square/"
                                                r"Shoes/Oxfords/<Brand>/555.1.jpg\); 1 of 11"):
        read_utzappos(release)


def test_image_missing(release):
    (release / image_path("7892181-326309")).unlink()
    with pytest.raises(FileNotFoundError, match=rf"meta-data.csv:{meta_line('7892181-326309')}:"
                                                r" no image for CID 7892181-326309"):
        read_utzappos(release)


def test_image_in_another_sub_category_folder(release):
    src = release / image_path("12-2")
    dst = release / "ut-zap50k-images-square/Sandals/Heel/Softspots/12.2.jpg"
    dst.parent.mkdir(parents=True)
    src.rename(dst)
    with pytest.raises(ValueError, match=rf"meta-data.csv:{meta_line('12-2')}: CID 12-2 is "
                                         r"Sandals/Flat but its image is .*Sandals/Heel/"):
        read_utzappos(release)


def test_bin_disagreeing_with_meta_data(release):
    path = release / "ut-zap50k-data/meta-data-bin.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("Material.Suede")
    line = meta_line("99999-3")  # same row order as meta-data.csv
    fields = lines[line - 1].split(",")
    assert fields[0] == "99999-3" and fields[column] == "1"
    fields[column] = "0"
    replace_line(path, line, ",".join(fields))
    with pytest.raises(ValueError, match=rf"{path}:{line}:{column + 1}: column Material.Suede is"
                                         rf" 0 but .*meta-data.csv:{line} gives 1 for "
                                         r"Material::Suede of CID 99999-3"):
        read_utzappos(release)


def test_bin_bad_value_and_unknown_cid(release):
    path = release / "ut-zap50k-data/meta-data-bin.csv"
    original = path.read_text()
    fields = original.splitlines()[2].split(",")
    fields[1] = "2"
    replace_line(path, 3, ",".join(fields))
    with pytest.raises(ValueError, match=rf"{path}:3:2: column Category.Boots must be 0 or 1, "
                                         r"got '2'"):
        read_utzappos(release)
    path.write_text(original.replace("12-2,", "12-9,"))
    with pytest.raises(ValueError, match=rf"{path}:\d+:1: CID '12-9' is not in"):
        read_utzappos(release)


def test_bin_with_unknown_naming_is_an_error(release):
    path = release / "ut-zap50k-data/meta-data-bin.csv"
    lines = path.read_text().splitlines()
    lines[0] = ",".join(["CID"] + [f"c{i}" for i in range(len(lines[0].split(",")) - 1)])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:1: no column names a value of "
                                         r"meta-data.csv.*move the file away"):
        read_utzappos(release)


def test_open_split_turns_reader_errors_into_data_errors(release):
    from clinfonce_plugin.errors import DataError

    (release / "ut-zap50k-data/meta-data.csv").unlink()
    cfg = OmegaConf.create({"dataset": "utzappos", "train_path": str(release),
                            "split_seed": 0})
    with pytest.raises(DataError, match="data.dataset=utzappos: UT-Zappos50K files missing"):
        open_split(cfg, "train")
