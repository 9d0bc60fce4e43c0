"""precomputed provider: cluster ids from csv (keyed by image path) or npy (dataset order)."""
import re

import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.precomputed import PrecomputedProvider, read_cluster_csv
from clinfonce_plugin.clusters.sample_info import SampleInfo

ALB = "001.Black_footed_Albatross"
LAY = "002.Laysan_Albatross"
AUTHOR = "/home/author/data/CUB_200_2011/images"

# Layout of the files published with Cl-InfoNCE: pandas index column with an empty
# header, path, class, label_gran_<k> columns, and a final "-1" summary row.
# Paths here are absolute paths of another machine; the dataset lists images/<class>/<file>.
PUBLISHED = f""",path,class,image_id,label_gran_3,label_gran_5
1,{AUTHOR}/{ALB}/Black_Footed_Albatross_0009_34.jpg,1,2,7,27
3,{AUTHOR}/{ALB}/Black_Footed_Albatross_0074_59.jpg,1,4,2,6
4,{AUTHOR}/{ALB}/Black_Footed_Albatross_0014_89.jpg,1,5,7,18
61,{AUTHOR}/{LAY}/Laysan_Albatross_0003_1033.jpg,2,62,5,18
63,{AUTHOR}/{LAY}/Laysan_Albatross_0044_784.jpg,2,64,7,13
-1,num_per_label_gran,2,5,3,4
"""
# dataset order differs from the file; the file's row for 0014_89 is not in this split
DATASET_PATHS = [
    f"images/{LAY}/Laysan_Albatross_0044_784.jpg",
    f"images/{ALB}/Black_Footed_Albatross_0009_34.jpg",
    f"images/{LAY}/Laysan_Albatross_0003_1033.jpg",
    f"images/{ALB}/Black_Footed_Albatross_0074_59.jpg",
]


def info(paths=DATASET_PATHS, root=None):
    return SampleInfo(num_samples=len(paths), paths=list(paths), root=root)


def write(tmp_path, text, name="clusters.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_published_layout_with_author_paths_and_k(tmp_path):
    file = write(tmp_path, PUBLISHED)
    p = PrecomputedProvider(info(), file=file, k=3)
    # raw label_gran_3 in dataset order: 7, 7, 5, 2 -> sorted {2, 5, 7} -> 2, 2, 1, 0
    assert p.ids.tolist() == [2, 2, 1, 0]
    assert p.column == "label_gran_3"
    # label_gran_5: 13, 27, 18, 6 -> {6, 13, 18, 27} -> 1, 3, 2, 0
    assert PrecomputedProvider(info(), file=file, k=5).ids.tolist() == [1, 3, 2, 0]
    # an explicit column
    assert PrecomputedProvider(info(), file=file, column="class").ids.tolist() == [1, 0, 1, 0]
    assert "column 'label_gran_3' of" in p.describe()


def test_published_relative_paths_match_by_trailing_components(tmp_path):
    file = write(tmp_path, PUBLISHED.replace(AUTHOR + "/", ""))
    assert PrecomputedProvider(info(), file=file, k=3).ids.tolist() == [2, 2, 1, 0]


def test_summary_row_is_skipped_only_with_an_index_column(tmp_path):
    keys, ids, column, lines = read_cluster_csv(write(tmp_path, PUBLISHED), k=3)
    assert len(keys) == 5 and ids.tolist() == [7, 2, 7, 5, 7]
    assert lines == [2, 3, 4, 5, 6]
    # without the pandas index column a -1 id is not a summary row: -1 means "unknown"
    # elsewhere, so it is refused rather than made into a cluster
    plain = "path,cluster\na.jpg,-1\nb.jpg,4\n"
    with pytest.raises(ValueError, match=r"plain.csv:2: column 'cluster' holds '-1': cluster "
                                         r"ids must be integers in \[0, 2\*\*62\): -1 means"):
        read_cluster_csv(write(tmp_path, plain, "plain.csv"))


@pytest.mark.parametrize("value", ["1e30", "4611686018427387904", "-3"])
def test_ids_outside_the_int64_range_or_negative_are_refused_with_the_line(tmp_path, value):
    text = f"path,cluster\na.jpg,1\nb.jpg,{value}\n"
    with pytest.raises(ValueError, match=rf"ids.csv:3: column 'cluster' holds '{value}'"):
        read_cluster_csv(write(tmp_path, text, "ids.csv"))


def test_exact_relative_path_wins_over_suffix(tmp_path):
    # Wider-style keys: train/ and val/ share class_dir/file; exact matching separates them
    text = "path,cluster\ntrain/0--Parade/x.jpg,10\nval/0--Parade/x.jpg,20\ntrain/0--Parade/y.jpg,20\n"
    p = PrecomputedProvider(info(["val/0--Parade/x.jpg", "./train/0--Parade/x.jpg"]),
                            file=write(tmp_path, text))
    assert p.ids.tolist() == [1, 0]


def test_exact_match_beats_a_longer_key_with_the_same_tail(tmp_path):
    # both keys share all of "a/c/x.jpg"; only the exact one is the dataset's image
    text = "path,cluster\nm/a/c/x.jpg,4\na/c/x.jpg,8\nm/a/c/y.jpg,4\n"
    p = PrecomputedProvider(info(["a/c/x.jpg", "a/c/y.jpg"]), file=write(tmp_path, text))
    assert p.ids.tolist() == [1, 0]


def test_longest_shared_suffix_disambiguates(tmp_path):
    text = "path,cluster\n/m/train/c/a.jpg,5\n/m/val/c/a.jpg,9\n"
    p = PrecomputedProvider(info(["data/train/c/a.jpg"]), file=write(tmp_path, text))
    assert p.ids.tolist() == [0]  # only row 5 survives; remapped to 0
    p = PrecomputedProvider(info(["data/train/c/a.jpg", "data/val/c/a.jpg"]),
                            file=write(tmp_path, text))
    assert p.ids.tolist() == [0, 1]


def test_windows_separators_and_quoted_commas(tmp_path):
    text = 'path,cluster\n"C:\\\\data\\\\Shoes\\\\Brand, Inc\\\\1.jpg",3\nShoes/Other/2.jpg,1\n'
    p = PrecomputedProvider(info(["Shoes/Brand, Inc/1.jpg", "Shoes/Other/2.jpg"]),
                            file=write(tmp_path, text))
    assert p.ids.tolist() == [1, 0]


def test_ambiguous_rows(tmp_path):
    text = "path,cluster\n/m1/c/a.jpg,1\n/m2/c/a.jpg,2\n/m1/c/b.jpg,1\n"
    with pytest.raises(ValueError, match=r"1 dataset images match several rows of .*clusters\.csv"
                                         r" equally well, e.g. images/c/a.jpg -> /m1/c/a.jpg \| /m2/c/a.jpg"):
        PrecomputedProvider(info(["images/c/a.jpg", "images/c/b.jpg"]),
                            file=write(tmp_path, text))


def test_row_claimed_by_two_images(tmp_path):
    text = "path,cluster\n/m/c/a.jpg,1\n"
    with pytest.raises(ValueError, match=r"1 rows of .* are matched by several dataset images.*e\.g\. /m/c/a\.jpg <- train/c/a\.jpg \| val/c/a\.jpg"):
        PrecomputedProvider(info(["train/c/a.jpg", "val/c/a.jpg"]), file=write(tmp_path, text))


def test_missing_images_counted_and_named(tmp_path):
    paths = DATASET_PATHS + [f"images/{ALB}/new_1.jpg", f"images/{LAY}/new_2.jpg"]
    with pytest.raises(ValueError, match=rf"2 of 6 dataset images have no row in .*clusters\.csv"
                                         rf".*e\.g\. \['images/{ALB}/new_1.jpg', "):
        PrecomputedProvider(info(paths), file=write(tmp_path, PUBLISHED), k=3)


def test_default_column_cluster_and_its_absence(tmp_path):
    with pytest.raises(ValueError, match=r"clusters\.csv:1: no id column 'cluster' \(the default.*"
                                         r"columns are \['class', 'image_id', 'label_gran_3', 'label_gran_5'\]"):
        PrecomputedProvider(info(), file=write(tmp_path, PUBLISHED))


def test_k_without_its_column(tmp_path):
    with pytest.raises(ValueError, match=r"no id column 'label_gran_4' \(from 'k'\)"):
        PrecomputedProvider(info(), file=write(tmp_path, PUBLISHED), k=4)


def test_column_and_k_together(tmp_path):
    with pytest.raises(ValueError, match="give 'column' or 'k', not both"):
        PrecomputedProvider(info(), file=write(tmp_path, PUBLISHED), k=3, column="class")


@pytest.mark.parametrize("k", [0, "3", 2.5])
def test_bad_k(tmp_path, k):
    with pytest.raises(ValueError, match=r"'k' must be an integer >= 1"):
        PrecomputedProvider(info(), file=write(tmp_path, PUBLISHED), k=k)


def test_no_path_column(tmp_path):
    with pytest.raises(ValueError, match=r"clusters\.csv:1: no 'path' column; columns are \['file', 'cluster'\]"):
        PrecomputedProvider(info(), file=write(tmp_path, "file,cluster\na,1\n"))


def test_wrong_field_count_names_line(tmp_path):
    text = "path,cluster\na/x.jpg,1\na/y.jpg,2,7\n"
    with pytest.raises(ValueError, match=r"clusters\.csv:3: expected 2 comma-separated fields.*got 3"):
        PrecomputedProvider(info(["a/x.jpg", "a/y.jpg"]), file=write(tmp_path, text))


def test_non_integer_id_names_line(tmp_path):
    text = "path,cluster\na/x.jpg,1.0\na/y.jpg,two\n"
    with pytest.raises(ValueError, match=r"clusters\.csv:3: column 'cluster' must hold an integer id, got 'two'"):
        PrecomputedProvider(info(["a/x.jpg", "a/y.jpg"]), file=write(tmp_path, text))


def test_duplicate_path_names_both_lines(tmp_path):
    text = "path,cluster\na/x.jpg,1\na/y.jpg,1\na/x.jpg,2\n"
    with pytest.raises(ValueError, match=r"clusters\.csv:4: path 'a/x.jpg' already given on line 2"):
        PrecomputedProvider(info(["a/x.jpg"]), file=write(tmp_path, text))


def test_empty_csv(tmp_path):
    with pytest.raises(ValueError, match="empty file"):
        PrecomputedProvider(info(), file=write(tmp_path, ""))
    with pytest.raises(ValueError, match="no data rows"):
        PrecomputedProvider(info(), file=write(tmp_path, "path,cluster\n"))


def test_csv_needs_paths(tmp_path):
    with pytest.raises(ValueError, match="SampleInfo.paths is None"):
        PrecomputedProvider(SampleInfo(num_samples=4), file=write(tmp_path, PUBLISHED), k=3)


def test_npy_in_dataset_order(tmp_path):
    np.save(tmp_path / "ids.npy", np.array([10, 3, 3, 0, 10]))
    p = PrecomputedProvider(SampleInfo(num_samples=5), file=str(tmp_path / "ids.npy"))
    assert p.ids.tolist() == [2, 1, 1, 0, 2]  # {0, 3, 10} -> 0, 1, 2
    assert p(torch.tensor([4, 3])).tolist() == [2, 0]
    np.save(tmp_path / "f.npy", np.array([2.0, 0.0]))
    assert PrecomputedProvider(SampleInfo(num_samples=2), file=str(tmp_path / "f.npy")).ids.tolist() == [1, 0]


def test_negative_or_huge_npy_ids_are_refused_with_the_index(tmp_path):
    for values, shown in (([3, -1], "-1"), ([3.0, 1e30], "1e+30")):
        np.save(tmp_path / "ids.npy", np.array(values))
        with pytest.raises(ValueError, match=rf"ids.npy\[1\] = {re.escape(shown)}: cluster "
                                             r"ids must be integers"):
            PrecomputedProvider(SampleInfo(num_samples=2), file=str(tmp_path / "ids.npy"))


def test_npy_relative_to_root(tmp_path):
    np.save(tmp_path / "ids.npy", np.array([1, 0]))
    p = PrecomputedProvider(SampleInfo(num_samples=2, root=str(tmp_path)), file="ids.npy")
    assert p.ids.tolist() == [1, 0]


def test_npy_length_mismatch(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(4))
    with pytest.raises(ValueError, match=r"holds shape \(4,\), expected \(5,\)"):
        PrecomputedProvider(SampleInfo(num_samples=5), file=str(tmp_path / "ids.npy"))


def test_npy_non_integer(tmp_path):
    np.save(tmp_path / "ids.npy", np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match=r"ids\.npy\[1\] = 0\.5 is not an integer id"):
        PrecomputedProvider(SampleInfo(num_samples=2), file=str(tmp_path / "ids.npy"))
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="expected integer ids"):
        PrecomputedProvider(SampleInfo(num_samples=2), file=str(tmp_path / "s.npy"))


def test_npy_rejects_csv_options(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(2))
    with pytest.raises(ValueError, match="apply to csv files only"):
        PrecomputedProvider(SampleInfo(num_samples=2), file=str(tmp_path / "ids.npy"), k=3)


def test_unsupported_extension(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.csv or \.npy, got .*ids\.txt"):
        PrecomputedProvider(SampleInfo(num_samples=2), file=write(tmp_path, "0\n1\n", "ids.txt"))


def test_missing_file_lists_places(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"file 'gone.csv' not found; looked in \[.*gone\.csv"):
        PrecomputedProvider(info(root=str(tmp_path)), file="gone.csv")


def test_file_required():
    with pytest.raises(ValueError, match=r"missing required parameter\(s\) \['file'\]"):
        PrecomputedProvider(info())
