"""k selection (Cl-InfoNCE Fig. 4): crossing rules on hand-made curves, a toy sweep, output."""
import sys

import numpy as np
import pytest

from clinfonce_plugin.metrics.k_selection import (
    SelectionResult,
    choose_k,
    format_table,
    plot_selection,
    select_k,
)

# --- choose_k on hand-made curves ------------------------------------------------------


def test_interior_crossing():
    # mi  = [0, 2, 4, 9, 10] -> a = [0, .2, .4, .9, 1]
    # H   = [0, 2, 3, 7, 10] -> b = 1 - H/10 = [1, .8, .7, .3, 0]
    # a-b = [-1, -.6, -.3, .6, 1]: negative -> non-negative between k=3 and k=4 -> k=4
    ks = [1, 2, 3, 4, 5]
    index, details = choose_k(ks, [0, 2, 4, 9, 10], [0, 2, 3, 7, 10])
    assert index == 3
    assert details["rule"] == "crossing"
    np.testing.assert_allclose(details["mi_norm"], [0, 0.2, 0.4, 0.9, 1])
    np.testing.assert_allclose(details["neg_cond_ent_norm"], [1, 0.8, 0.7, 0.3, 0])
    np.testing.assert_allclose(details["diff"], [-1, -0.6, -0.3, 0.6, 1])


def test_unsorted_ks_index_refers_to_given_order():
    # same curves as above, shuffled: the chosen k is still 4, reported at its position
    perm = [4, 0, 3, 1, 2]
    ks = np.array([1, 2, 3, 4, 5])[perm]
    mi = np.array([0, 2, 4, 9, 10])[perm]
    h = np.array([0, 2, 3, 7, 10])[perm]
    index, details = choose_k(ks, mi, h)
    assert ks[index] == 4
    np.testing.assert_allclose(details["mi_norm"], np.array([0, 0.2, 0.4, 0.9, 1])[perm])


def test_exact_tie_is_chosen():
    # a = [0, .25, .5, .75, 1], b = [1, .75, .5, .25, 0]: a - b = 0 exactly at k=30
    index, details = choose_k([10, 20, 30, 40, 50], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    assert index == 2
    assert details["rule"] == "crossing"
    assert details["diff"][2] == 0.0


def test_exact_zero_before_any_sign_change_wins():
    # mi = [1, 2, 0, 2] -> a = [.5, 1, 0, 1]; H = [1, 2, 0, 2] -> b = [.5, 0, 1, 0]
    # a-b = [0, 1, -1, 1]: exact zero at k=1 comes before the crossing at k=4 -> k=1
    index, details = choose_k([1, 2, 3, 4], [1, 2, 0, 2], [1, 2, 0, 2])
    np.testing.assert_array_equal(details["diff"], [0, 1, -1, 1])
    assert index == 0
    assert details["rule"] == "crossing"


def test_first_of_several_crossings():
    # a = [0, 1, 0, 1], b = 1 - [0, 1, 0, 1] = [1, 0, 1, 0]
    # a-b = [-1, 1, -1, 1]: crossings at k=2 and k=4 -> the first, k=2
    index, _ = choose_k([1, 2, 3, 4], [0, 1, 0, 1], [0, 1, 0, 1])
    assert index == 1


def test_no_crossing_takes_smallest_gap():
    # mi = [4, 3, 2, 1, 0]     -> a = [1, .75, .5, .25, 0]
    # H  = [10, 9, 7, 2, 0]    -> b = [0, .1, .3, .8, 1]
    # a-b = [1, .65, .2, -.55, -1]: only a positive -> negative change, no crossing;
    # smallest |a-b| = .2 at k=3
    index, details = choose_k([1, 2, 3, 4, 5], [4, 3, 2, 1, 0], [10, 9, 7, 2, 0])
    assert index == 2
    assert details["rule"] == "closest"


def test_no_crossing_gap_tie_goes_to_smaller_k():
    # a = [1, .5, .25, 0] (mi = [4, 2, 1, 0]), b = [0, .25, .5, 1] (H = [4, 3, 2, 0])
    # a-b = [1, .25, -.25, -1]: no crossing, |.25| at k=2 and k=3 -> k=2
    index, details = choose_k([1, 2, 3, 4], [4, 2, 1, 0], [4, 3, 2, 0])
    assert index == 1
    assert details["rule"] == "closest"


def test_constant_curve_is_one_half():
    # mi constant -> a = [.5, .5, .5]; H = [0, 1, 2] -> b = [1, .5, 0]; a-b = [-.5, 0, .5]
    index, details = choose_k([1, 2, 3], [3, 3, 3], [0, 1, 2])
    np.testing.assert_array_equal(details["mi_norm"], [0.5, 0.5, 0.5])
    assert index == 1
    # both constant: a - b = 0 everywhere -> the first k
    index, details = choose_k([1, 2, 3], [3, 3, 3], [1, 1, 1])
    np.testing.assert_array_equal(details["neg_cond_ent_norm"], [0.5, 0.5, 0.5])
    assert index == 0


def test_single_k():
    index, details = choose_k([7], [0.3], [1.2])
    assert index == 0
    assert details["mi_norm"].tolist() == [0.5]


@pytest.mark.parametrize(
    "ks, mi, h, match",
    [
        ([1, 2], [0, 1, 2], [0, 1], "mi"),
        ([1, 2], [0, 1], [0], "cond_ent"),
        ([1, 1], [0, 1], [0, 1], "distinct"),
        ([], [], [], "non-empty"),
        ([1.5, 2.0], [0, 1], [0, 1], "integers"),
        ([1, 2], [0, float("nan")], [0, 1], "finite"),
    ],
)
def test_choose_k_bad_input(ks, mi, h, match):
    with pytest.raises(ValueError, match=match):
        choose_k(ks, mi, h)


# --- select_k on a toy sweep -----------------------------------------------------------

LABELS = np.arange(16) // 4  # 4 balanced classes of 4 samples: H(T) = 2 bits


def toy_clusters(k):
    """Clusterings whose I and H(Z|T) are known by hand (bits, against LABELS):

    k=1: one cluster                       I = 0, H(Z|T) = 0
    k=2: class pairs {0,1}, {2,3}         I = 1, H(Z|T) = 0
    k=3: each class split in two halves    I = 2, H(Z|T) = 1
    k=4: instance ids                      I = 2, H(Z|T) = 2
    """
    if k == 1:
        return np.zeros(16, dtype=np.int64)
    if k == 2:
        return LABELS // 2
    if k == 3:
        return np.arange(16) // 2
    return np.arange(16) + 100


def test_select_k_on_toy_sweep():
    # a = [0, .5, 1, 1], b = 1 - H/2 = [1, 1, .5, 0], a-b = [-1, -.5, .5, 1] -> k=3
    result = select_k(toy_clusters, LABELS, [4, 1, 3, 2])
    assert isinstance(result, SelectionResult)
    np.testing.assert_array_equal(result.ks, [1, 2, 3, 4])
    np.testing.assert_array_equal(result.num_clusters, [1, 2, 8, 16])
    np.testing.assert_allclose(result.mi, [0, 1, 2, 2], atol=1e-12)
    np.testing.assert_allclose(result.cond_ent, [0, 0, 1, 2], atol=1e-12)
    np.testing.assert_allclose(result.mi_norm, [0, 0.5, 1, 1], atol=1e-12)
    np.testing.assert_allclose(result.neg_cond_ent_norm, [1, 1, 0.5, 0], atol=1e-12)
    assert result.chosen_k == 3
    rows = result.rows()
    assert [r["chosen"] for r in rows] == [False, False, True, False]
    assert rows[2]["I"] == pytest.approx(2) and rows[2]["H(Z|T)"] == pytest.approx(1)


def test_select_k_ignores_unknown_labels():
    # 4 extra samples with label -1 in one cluster of their own must not change anything
    labels = np.concatenate([LABELS, -np.ones(4, dtype=np.int64)])

    def padded(k):
        return np.concatenate([toy_clusters(k), np.full(4, 999)])

    full = select_k(padded, labels, [1, 2, 3, 4])
    plain = select_k(toy_clusters, LABELS, [1, 2, 3, 4])
    np.testing.assert_allclose(full.mi, plain.mi)
    np.testing.assert_allclose(full.cond_ent, plain.cond_ent)
    assert full.chosen_k == plain.chosen_k


def test_select_k_rejects_bad_cluster_fn():
    with pytest.raises(ValueError, match="tuple"):
        select_k(lambda k: (toy_clusters(k), ["name"]), LABELS, [1, 2])
    with pytest.raises(ValueError, match="shape"):
        select_k(lambda k: np.zeros(3, dtype=np.int64), LABELS, [1, 2])
    with pytest.raises(ValueError, match="ignore_label"):
        select_k(toy_clusters, -np.ones(16, dtype=np.int64), [1, 2])


# --- table and plot --------------------------------------------------------------------


def test_format_table_marks_chosen_row():
    result = select_k(toy_clusters, LABELS, [1, 2, 3, 4])
    table = format_table(result)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 4
    assert "H(Z\\|T)" in lines[0]  # the bar is escaped so the markdown has 7 columns
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines)
    marked = [line for line in lines if "<- chosen" in line]
    assert len(marked) == 1
    assert marked[0].startswith("| **3** | **8** | **2.0000** | **1.0000**")


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    result = select_k(toy_clusters, LABELS, [1, 2, 3, 4])
    path = tmp_path / "k_selection.png"
    assert plot_selection(result, str(path)) == str(path)
    data = path.read_bytes()
    assert len(data) > 0
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    result = select_k(toy_clusters, LABELS, [1, 2])
    with pytest.raises(ImportError, match=r"pip install clinfonce-plugin\[plots\]"):
        plot_selection(result, str(tmp_path / "x.png"))
