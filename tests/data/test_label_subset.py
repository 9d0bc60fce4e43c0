"""The labelled subset of semi-supervised fine-tuning: the per-class draw against a case
computed by hand from the documented rule, and subset files (relative paths, file names,
their errors with file:line)."""
import numpy as np
import pytest

from clinfonce_plugin.data.label_subset import (per_class_count, per_class_subset,
                                                read_subset_file)

# class 0: 10 images, class 1: 3 images, class 2: 25 images, interleaved
LABELS = np.array([0, 1, 2] * 3 + [0] * 7 + [2] * 22)


def test_per_class_counts_round_half_up_with_at_least_one():
    assert [per_class_count(0.1, n) for n in (1, 4, 5, 10, 14, 15, 25, 30)] == \
        [1, 1, 1, 1, 1, 2, 3, 3]
    assert [per_class_count(0.01, n) for n in (732, 1300, 1250, 1249)] == [7, 13, 13, 12]
    assert per_class_count(1.0, 7) == 7


def test_per_class_draw_follows_the_documented_rule():
    # by hand: one RandomState(3), classes in increasing order, each class's sorted indices
    rng = np.random.RandomState(3)
    expected = []
    for c, keep in ((0, 1), (1, 1), (2, 3)):  # 10 -> 1, 3 -> 1 (0.3 up to 1), 25 -> 2.5 -> 3
        members = [i for i, y in enumerate(LABELS) if y == c]
        expected += [members[j] for j in rng.permutation(len(members))[:keep]]
    got = per_class_subset(LABELS, 0.1, seed=3)
    assert got.tolist() == sorted(expected)
    assert np.bincount(LABELS[got]).tolist() == [1, 1, 3]


def test_the_draw_is_deterministic_and_seeds_differ():
    a = per_class_subset(LABELS, 0.5, seed=0)
    assert a.tolist() == per_class_subset(LABELS, 0.5, seed=0).tolist()
    assert np.bincount(LABELS[a]).tolist() == [5, 2, 13]
    draws = {tuple(per_class_subset(LABELS, 0.5, seed=s)) for s in range(5)}
    assert len(draws) == 5
    assert per_class_subset(LABELS, 1.0, seed=7).tolist() == list(range(len(LABELS)))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="label fraction must be in"):
        per_class_subset(LABELS, fraction, 0)


PATHS = ["train/n01/n01_1.JPEG", "train/n01/n01_2.JPEG", "train/n02/n02_1.JPEG",
         "images/a/same.jpg", "images/b/same.jpg"]


def _write(tmp_path, text, name="subset.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def test_subset_file_takes_paths_and_file_names(tmp_path):
    path = _write(tmp_path, "\ufeff# SimCLR-style list\r\nn02_1.JPEG\r\n\r\n"
                  "./train/n01/n01_1.JPEG\r\nimages\\b\\same.jpg\r\n")
    assert read_subset_file(path, PATHS, "train split").tolist() == [0, 2, 4]


@pytest.mark.parametrize("text, message", [
    ("n01_1.JPEG\nn03_9.JPEG\n", r"subset.txt:2: 'n03_9.JPEG' is not an image of the train "
                                 r"split \(expected a path relative to the dataset root such "
                                 r"as 'train/n01/n01_1.JPEG', or a file name\)"),
    ("train/n09/n01_1.JPEG\n", r"subset.txt:1: 'train/n09/n01_1.JPEG' is not an image"),
    ("same.jpg\n", r"subset.txt:1: file name 'same.jpg' names 2 images of the train split "
                   r"\('images/a/same.jpg', 'images/b/same.jpg', ...\): give the path"),
    ("n01_2.JPEG\n\ntrain/n01/n01_2.JPEG\n", r"subset.txt:3: 'train/n01/n01_2.JPEG' is listed "
                                             r"twice \(first at line 1\)"),
    ("# nothing\n\n", r"subset.txt: lists no image; expected one image path per line"),
])
def test_subset_file_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_subset_file(_write(tmp_path, text), PATHS, "train split")
