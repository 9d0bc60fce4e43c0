"""The controlled cluster families of Cl-InfoNCE App. H (clusters/families.py): equal as
partitions to the files published with the paper, information measures against a
reference computed here, the held quantity constant within each family."""
import math
import os
from collections import Counter

import numpy as np
import pytest

from clinfonce_plugin.clusters.families import (
    FAMILIES, branch_levels, build_family, family_table, fixed_h_z, fixed_h_zt, fixed_i_zt)
from tests.helpers import slow_mi_and_cond_entropy

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "utzappos_synthetic_official.npz")


def canonical(z):
    """Labels renumbered by first appearance: equal arrays <=> equal partitions."""
    _, first, inverse = np.unique(z, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.reshape(-1)]


# ------------------------------------------------------------------ the published files
@pytest.fixture(scope="module")
def official():
    return dict(np.load(FIXTURE))


def test_fixed_h_zt_equals_the_published_fixh_file(official):
    cls = official["class"].astype(np.int64)
    members = fixed_h_zt(cls)
    published = {k.split("__", 1)[1]: v for k, v in official.items() if k.startswith("fixh__")}
    assert sorted(members) == sorted(published)
    assert len(members) == 6  # 21 classes: levels of 1, 2, 4, 8, 16 classes and the root
    for name, per_class in published.items():
        assert np.array_equal(canonical(members[name]), canonical(per_class[cls])), name


def test_fixed_i_zt_equals_the_published_hirc_rand_file(official):
    cls = official["class"].astype(np.int64)
    members = fixed_i_zt(cls)
    order = np.lexsort((official["rank"], cls))
    names = [k.split("__", 1)[1] for k in official if k.startswith("runs__")]
    assert list(members) == names  # same members, in the file's column order
    for name in names:
        runs = official[f"runs__{name}"].astype(np.int64)
        published = np.empty(cls.size, dtype=np.int64)
        published[order] = np.repeat(np.arange(runs.size), runs)
        assert np.array_equal(canonical(members[name]), canonical(published)), name
    # the extremes: the classes themselves and one cluster per instance
    assert np.array_equal(canonical(members["label_gran_0"]), canonical(cls))
    assert np.unique(members[names[0]]).size == cls.size


def test_another_numbering_of_the_classes_gives_the_published_partitions(official):
    """A reader numbering the 21 classes otherwise (this project's UT-Zappos50K reader
    sorts them by (Category, SubCategory)) gets the same families: the classes are ranked
    by frequency, as the published class column is."""
    cls = official["class"].astype(np.int64)
    relabelled = np.random.default_rng(0).permutation(21)[cls] * 3 + 5
    for build in (fixed_h_zt, fixed_i_zt, fixed_h_z):
        a, b = build(cls), build(relabelled)
        assert list(a) == list(b)
        for name in a:
            assert np.array_equal(canonical(a[name]), canonical(b[name])), name


def test_classes_are_ranked_by_frequency():
    # class 9 has 3 images, 4 has 2, 1 has 1: ranked 9, 4, 1 (then the finest member of
    # fixed_i_zt numbers class 9's images first)
    labels = np.array([1, 4, 9, 9, 4, 9])
    z = fixed_i_zt(labels)["label_gran_2"]
    assert sorted(z[labels == 9].tolist()) == [0, 1, 2]
    assert sorted(z[labels == 4].tolist()) == [3, 4]
    assert z[labels == 1].tolist() == [5]


# ------------------------------------------------------------------ hand-computed cases
def test_branch_levels_by_hand():
    assert [lv.tolist() for lv in branch_levels(5)] == [
        [0, 1, 2, 3, 4], [0, 0, 1, 1, 2], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert [lv.tolist() for lv in branch_levels(4)] == [[0, 1, 2, 3], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert [lv.tolist() for lv in branch_levels(2)] == [[0, 1], [0, 0]]
    assert [lv.tolist() for lv in branch_levels(1)] == [[0], [0]]
    assert [lv.tolist() for lv in branch_levels(7, branch=3)] == [
        list(range(7)), [0, 0, 0, 1, 1, 1, 2], [0] * 7]


def test_fixed_h_zt_follows_the_seeded_class_order():
    labels = np.array([10, 20, 30, 40, 10, 20, 30, 40])
    order = np.random.RandomState(0).permutation(4)  # leaf i holds class order[i]
    members = fixed_h_zt(labels)
    for m, size in enumerate([1, 2, 4]):
        leaf_of_class = np.argsort(order)
        expected = leaf_of_class[np.searchsorted([10, 20, 30, 40], labels)] // size
        assert members[f"label_gran_{m}"].tolist() == expected.tolist()


def test_fixed_h_z_reference_with_the_global_random_state():
    """The official generator's order of draws, written with numpy's global legacy state."""
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 0, 1, 0])
    members = fixed_h_z(labels)
    base = fixed_i_zt(labels)
    np.random.seed(0)
    np.random.permutation(np.flatnonzero(labels == 2))  # last class, last level
    class_order = np.random.permutation(3)
    expected = {}
    for name, z in base.items():
        for i in range(3):
            touched = np.flatnonzero(np.isin(labels, class_order[:i]))
            column = z.astype(float)
            column[touched] = np.random.permutation(column[touched])
            expected[f"{name}_{i}"] = column.astype(int)
    assert list(members) == list(expected)
    for name in expected:
        assert members[name].tolist() == expected[name].tolist(), name


# ------------------------------------------------------------------ measures
def reference_measures(z, t):
    """I(Z;T), H(Z|T), H(Z) in bits from explicit counts."""
    mi, h_cond = slow_mi_and_cond_entropy(z.tolist(), t.tolist())
    n = len(z)
    hz = -sum(c / n * math.log2(c / n) for c in Counter(z.tolist()).values())
    return {"I(Z;T)": mi, "H(Z|T)": h_cond, "H(Z)": hz}


UNEVEN = np.repeat([3, 7, 1, 0, 5], [5, 3, 9, 1, 6])  # classes of 5, 3, 9, 1, 6 images


@pytest.mark.parametrize("family", FAMILIES)
def test_measures_equal_a_reference(family):
    rng = np.random.default_rng(1)
    labels = rng.permutation(UNEVEN)
    members = build_family(family, labels)
    for row in family_table(members, labels):
        ref = reference_measures(members[row["member"]], labels)
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, abs=1e-9), (row["member"], key)
        assert row["clusters"] == len(set(members[row["member"]].tolist()))


def test_each_family_holds_its_quantity_fixed():
    labels = np.random.default_rng(2).permutation(UNEVEN)
    h_t = reference_measures(labels, labels)["H(Z)"]

    h = family_table(fixed_h_zt(labels), labels)
    assert all(abs(r["H(Z|T)"]) < 1e-9 for r in h)
    assert [r["clusters"] for r in h] == [5, 3, 2, 1]   # 5 classes, merged 2 at a time
    assert np.ptp([r["I(Z;T)"] for r in h]) > 1.0         # what varies

    i = family_table(fixed_i_zt(labels), labels)
    assert all(abs(r["I(Z;T)"] - h_t) < 1e-9 for r in i)
    assert i[0]["clusters"] == labels.size and i[-1]["member"] == "label_gran_0"
    assert np.ptp([r["H(Z|T)"] for r in i]) > 1.0

    hz = family_table(fixed_h_z(labels), labels)
    for base in fixed_i_zt(labels):
        group = [r for r in hz if r["member"].rsplit("_", 1)[0] == base]
        assert len(group) == 5
        assert np.ptp([r["H(Z)"] for r in group]) < 1e-9
    varied = [r for r in hz if r["member"].startswith("label_gran_0_")]
    assert varied[0]["I(Z;T)"] == pytest.approx(h_t, abs=1e-9)  # nothing shuffled yet
    assert varied[-1]["I(Z;T)"] < h_t - 0.5                    # four classes shuffled


def test_partial_permutation_touches_only_the_chosen_classes():
    labels = np.random.default_rng(3).permutation(UNEVEN)
    base = fixed_i_zt(labels)
    for name, z in fixed_h_z(labels).items():
        g, i = name.rsplit("_", 1)
        original = base[g]
        assert sorted(z.tolist()) == sorted(original.tolist())  # the same multiset of ids
        changed = np.flatnonzero(z != original)
        assert len(set(labels[changed].tolist())) <= int(i)


# ------------------------------------------------------------------ bad input
def test_families_that_cannot_be_built():
    for family in FAMILIES:
        with pytest.raises(ValueError, match="at least 2 classes"):
            build_family(family, np.zeros(8, dtype=int))
        with pytest.raises(ValueError, match="branch must be >= 2"):
            build_family(family, np.array([0, 1, 0, 1]), branch=1)
    with pytest.raises(ValueError, match="unknown family 'fixed_x'"):
        build_family("fixed_x", np.array([0, 1]))
    with pytest.raises(ValueError, match="integers"):
        fixed_h_zt(np.array([0.5, 1.0]))
