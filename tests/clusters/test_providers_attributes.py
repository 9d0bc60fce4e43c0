"""attributes provider: top-k highest-entropy binary attributes (Cl-InfoNCE Sec. 3.1)."""
import math

import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.attributes import (
    AttributesProvider,
    attribute_cluster_ids,
    binarize_attributes,
    binary_entropies,
)
from clinfonce_plugin.clusters.sample_info import SampleInfo

# Six images, four binary attributes.
#   ones: a 4/6 -> H(2/3) = 0.9183, b 2/6 -> H(1/3) = 0.9183, c 3/6 -> 1.0, d 5/6 -> 0.6500
#   ranking: c (1.0), a (0.918, column 0), b (0.918, column 1: loses the tie), d (0.650)
TABLE = np.array([
    # a  b  c  d
    [1, 0, 1, 1],
    [1, 1, 0, 1],
    [0, 0, 1, 1],
    [1, 0, 0, 1],
    [0, 1, 1, 1],
    [1, 0, 0, 0],
])
NAMES = ["a", "b", "c", "d"]
H_THIRD = -(1 / 3 * math.log2(1 / 3) + 2 / 3 * math.log2(2 / 3))  # 0.918296
H_SIXTH = -(1 / 6 * math.log2(1 / 6) + 5 / 6 * math.log2(5 / 6))  # 0.650022


def provider(table, k, names=None):
    info = SampleInfo(num_samples=len(table), attributes=np.asarray(table),
                      attribute_names=names)
    return AttributesProvider(info, k=k)


def test_entropies_by_hand():
    assert binary_entropies(TABLE) == pytest.approx([H_THIRD, H_THIRD, 1.0, H_SIXTH])
    assert H_THIRD == pytest.approx(0.918296, abs=1e-6)
    assert H_SIXTH == pytest.approx(0.650022, abs=1e-6)


@pytest.mark.parametrize("k, selected, ids", [
    # k=1, column c: c=0 -> rows 1,3,5; c=1 -> rows 0,2,4
    (1, ["c"], [1, 0, 1, 0, 1, 0]),
    # k=2, rows on (c, a): (1,1) (0,1) (1,0) (0,1) (1,0) (0,1) -> (0,1)=0 (1,0)=1 (1,1)=2
    (2, ["c", "a"], [2, 0, 1, 0, 1, 0]),
    # k=3, (c,a,b): (1,1,0) (0,1,1) (1,0,0) (0,1,0) (1,0,1) (0,1,0)
    #   sorted: (0,1,0)=0 (0,1,1)=1 (1,0,0)=2 (1,0,1)=3 (1,1,0)=4
    (3, ["c", "a", "b"], [4, 1, 2, 0, 3, 0]),
    # k=4: d splits rows 3 and 5, every image alone; sorted rows on (c,a,b,d):
    #   (0,1,0,0)=row5 (0,1,0,1)=row3 (0,1,1,1)=row1 (1,0,0,1)=row2 (1,0,1,1)=row4 (1,1,0,1)=row0
    (4, ["c", "a", "b", "d"], [5, 2, 3, 1, 4, 0]),
])
def test_hand_computed_partitions(k, selected, ids):
    p = provider(TABLE, k, NAMES)
    assert p.selected_attributes == selected
    assert p.ids.tolist() == ids
    expected_h = {"a": H_THIRD, "b": H_THIRD, "c": 1.0, "d": H_SIXTH}
    assert p.selected_entropies == pytest.approx([expected_h[n] for n in selected])
    assert attribute_cluster_ids(TABLE, k, NAMES)[0].tolist() == ids
    assert attribute_cluster_ids(TABLE, k, NAMES)[1] == selected


def test_tie_broken_by_lower_column_index():
    # same table with a and b swapped: now b is column 0 and wins the tie
    swapped = TABLE[:, [1, 0, 2, 3]]
    ids, selected = attribute_cluster_ids(swapped, 2, ["b", "a", "c", "d"])
    assert selected == ["c", "b"]
    # rows on (c, b): (1,0) (0,1) (1,0) (0,0) (1,1) (0,0) -> (0,0)=0 (0,1)=1 (1,0)=2 (1,1)=3
    assert ids.tolist() == [2, 1, 2, 0, 3, 0]


def test_complementary_columns_have_bit_identical_entropy():
    # 3 ones vs 7 ones out of 10: mathematically equal entropies must compare equal
    col = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    table = np.stack([1 - col, col], axis=1)
    h = binary_entropies(table)
    assert h[0] == h[1]
    assert attribute_cluster_ids(table, 1)[1] == ["attr0"]


def test_constant_columns_rank_last():
    table = np.array([[0, 1, 5], [0, 0, 5], [0, 1, 5], [0, 0, 5]])
    binary, names = binarize_attributes(table, ["zero", "x", "five"])
    assert names == ["zero", "x", "five=5"]  # constant 0 is binary; constant 5 is one-hot
    assert binary[:, 2].tolist() == [1, 1, 1, 1]
    assert binary_entropies(binary).tolist() == [0.0, 1.0, 0.0]
    _, selected = attribute_cluster_ids(table, 3, ["zero", "x", "five"])
    assert selected == ["x", "zero", "five=5"]


def test_multi_valued_column_is_one_hot_binarised():
    color = [0, 1, 2, 2, 1, 2]
    big = [1, 0, 1, 0, 0, 1]
    table = np.stack([color, big], axis=1)
    binary, names = binarize_attributes(table, ["color", "big"])
    assert names == ["color=0", "color=1", "color=2", "big"]
    assert binary.tolist() == [
        [1, 0, 0, 1],
        [0, 1, 0, 0],
        [0, 0, 1, 1],
        [0, 0, 1, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 1],
    ]
    # entropies: color=0 1/6 -> 0.650, color=1 2/6 -> 0.918, color=2 3/6 -> 1, big 3/6 -> 1
    # ranking: color=2 (1.0, col 2), big (1.0, col 3), color=1, color=0
    p = provider(table, 2, ["color", "big"])
    assert p.selected_attributes == ["color=2", "big"]
    # rows on (color=2, big): (0,1) (0,0) (1,1) (1,0) (0,0) (1,1)
    assert p.ids.tolist() == [1, 0, 3, 2, 0, 3]


def test_two_valued_column_outside_zero_one_is_binarised():
    binary, names = binarize_attributes(np.array([[0], [2], [2], [0]]), ["x"])
    assert names == ["x=0", "x=2"]
    assert binary.tolist() == [[1, 0], [0, 1], [0, 1], [1, 0]]


def test_default_names_and_bool_table():
    binary, names = binarize_attributes(np.array([[True, False], [False, False]]))
    assert names == ["attr0", "attr1"]
    assert binary.tolist() == [[1, 0], [0, 0]]


def reference_groups(table):
    """Samples grouped by identical raw rows, via a python dict."""
    groups = {}
    for i, row in enumerate(map(tuple, np.asarray(table).tolist())):
        groups.setdefault(row, []).append(i)
    return sorted(groups.values())


def partition(ids):
    groups = {}
    for i, c in enumerate(ids.tolist()):
        groups.setdefault(c, []).append(i)
    return sorted(groups.values())


@pytest.mark.parametrize("seed", range(5))
def test_all_columns_equal_grouping_identical_rows(seed):
    rng = np.random.default_rng(seed)
    n = 40
    table = np.concatenate([
        rng.integers(0, 2, size=(n, 3)),  # binary
        rng.integers(0, 4, size=(n, 2)),  # multi-valued
    ], axis=1)
    binary, _ = binarize_attributes(table)
    ids, _ = attribute_cluster_ids(table, binary.shape[1])
    assert partition(ids) == reference_groups(table)
    assert sorted(set(ids.tolist())) == list(range(ids.max() + 1))


@pytest.mark.parametrize("seed", range(3))
def test_matches_slow_reference_and_refines_with_k(seed):
    rng = np.random.default_rng(100 + seed)
    n, a = 30, 6
    table = (rng.random((n, a)) < rng.random(a)).astype(int)
    names = [f"q{j}" for j in range(a)]

    def entropy(col):
        p = sum(col) / len(col)
        return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))

    # reference ranking: entropy descending (rounded so float noise cannot reorder ties),
    # then column index
    ranked = sorted(range(a), key=lambda j: (-round(entropy(table[:, j].tolist()), 12), j))
    previous = None
    for k in range(1, a + 1):
        ids, selected = attribute_cluster_ids(table, k, names)
        assert selected == [names[j] for j in ranked[:k]]
        assert partition(ids) == reference_groups(table[:, ranked[:k]])
        # lexicographic order of the kept rows gives the ids
        rows = [tuple(table[i, ranked[:k]]) for i in range(n)]
        order = sorted(set(rows))
        assert ids.tolist() == [order.index(r) for r in rows]
        if previous is not None:  # adding an attribute can only split clusters
            for c in set(ids.tolist()):
                assert len(set(previous[ids == c].tolist())) == 1
        previous = ids


def test_lookup_on_torch_indexes():
    p = provider(TABLE, 2, NAMES)
    assert p(torch.tensor([0, 5, 2])).tolist() == [2, 0, 1]


def test_describe_names_selected_attributes():
    line = provider(TABLE, 2, NAMES).describe()
    assert "top-2 attributes by entropy: c (1.000 bits), a (0.918 bits)" in line


@pytest.mark.parametrize("k", [0, 5, -1])
def test_k_out_of_range(k):
    with pytest.raises(ValueError, match=rf"'k' must be an integer in \[1, 4\] .*got {k}"):
        provider(TABLE, k, NAMES)


@pytest.mark.parametrize("k", ["2", 2.0, True, None])
def test_k_not_an_integer(k):
    with pytest.raises(ValueError, match=r"attributes: parameter 'k' must be an integer"):
        provider(TABLE, k, NAMES)


def test_k_counts_binarised_columns():
    # one 3-valued column -> 3 binary columns, so k=3 is valid and k=4 is not
    table = np.array([[0], [1], [2]])
    assert provider(table, 3).num_clusters == 3
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        provider(table, 4)


def test_k_required():
    info = SampleInfo(num_samples=6, attributes=TABLE)
    with pytest.raises(ValueError, match=r"missing required parameter\(s\) \['k'\]"):
        AttributesProvider(info)


def test_unknown_parameter():
    info = SampleInfo(num_samples=6, attributes=TABLE)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['top_k'\]. Valid parameters: \['k'\]"):
        AttributesProvider(info, top_k=2)


def test_attributes_missing():
    with pytest.raises(ValueError, match="needs SampleInfo.attributes"):
        AttributesProvider(SampleInfo(num_samples=3), k=1)


def test_non_integer_attribute_value():
    table = np.array([[0.0, 1.0], [0.5, 1.0]])
    with pytest.raises(ValueError, match=r"integer values, got 0.5 at sample 1, column 0"):
        provider(table, 1)


def test_names_length_mismatch():
    with pytest.raises(ValueError, match="got 1 attribute names for 2 attribute columns"):
        binarize_attributes(np.array([[0, 1]]), ["only"])
