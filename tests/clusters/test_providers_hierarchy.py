"""hierarchy provider: ancestor at level l of a label tree (Cl-InfoNCE App. B)."""
import random

import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.hierarchy import HierarchyProvider, LabelTree, read_pairs
from clinfonce_plugin.clusters.sample_info import SampleInfo

# A DAG with two multi-parent nodes:
#   goldfish: parents fish (depth 2) and pet (depth 1) -> keeps pet (smaller depth, even
#             though "fish" < "pet" by name)
#   dog:      parents mammal and pet, both depth 1 -> keeps mammal (smaller name)
# Expected pruned tree (level = depth + 1):
#   L1 animal
#   L2 aquatic            bird      mammal        pet
#   L3 fish               sparrow   cat, dog      goldfish
#   L4 salmon
PAIRS = [
    ("animal", "mammal"), ("animal", "bird"), ("animal", "pet"), ("animal", "aquatic"),
    ("aquatic", "fish"), ("fish", "goldfish"), ("pet", "goldfish"), ("fish", "salmon"),
    ("mammal", "dog"), ("pet", "dog"), ("mammal", "cat"), ("bird", "sparrow"),
]
CLASSES = ["cat", "dog", "goldfish", "salmon", "sparrow"]
LABELS = np.array([0, 1, 2, 3, 4, 1, 2, -1])


def info(labels=LABELS, classes=CLASSES, root=None):
    return SampleInfo(num_samples=len(labels), labels=np.asarray(labels),
                      class_names=classes, root=root)


def build(level, pairs=PAIRS, **kw):
    return HierarchyProvider(info(**kw), pairs=[list(p) for p in pairs], level=level)


def test_pruned_tree_ancestors():
    p = build(2)
    assert p.ancestors("goldfish") == ["animal", "pet", "goldfish"]
    assert p.ancestors("dog") == ["animal", "mammal", "dog"]
    assert p.ancestors("salmon") == ["animal", "aquatic", "fish", "salmon"]
    assert p.ancestors("cat") == ["animal", "mammal", "cat"]
    assert p.ancestors("animal") == ["animal"]


@pytest.mark.parametrize("level, ids, names", [
    # one cluster for every labelled sample; the unknown (-1) sample is a singleton
    (1, [0, 0, 0, 0, 0, 0, 0, 1], ["animal", None]),
    # cat, dog -> mammal; goldfish -> pet; salmon -> aquatic; sparrow -> bird
    (2, [2, 2, 3, 0, 1, 2, 3, 4], ["aquatic", "bird", "mammal", "pet", None]),
    # salmon -> fish; the others are their own level-3 node
    (3, [0, 1, 3, 2, 4, 1, 3, 5], ["cat", "dog", "fish", "goldfish", "sparrow", None]),
    # deep levels give the leaves
    (4, [0, 1, 2, 3, 4, 1, 2, 5], CLASSES + [None]),
    (50, [0, 1, 2, 3, 4, 1, 2, 5], CLASSES + [None]),
])
def test_levels_by_hand(level, ids, names):
    p = build(level)
    assert p.ids.tolist() == ids
    assert p.cluster_names == names


def test_pair_order_does_not_change_the_tree():
    shuffled = list(PAIRS)
    random.Random(3).shuffle(shuffled)
    a, b = build(3), build(3, pairs=shuffled)
    assert a.ids.tolist() == b.ids.tolist()
    assert all(a.ancestors(c) == b.ancestors(c) for c in CLASSES)


def test_deep_level_equals_label_clusters():
    from clinfonce_plugin.clusters.labels import LabelsProvider
    deep = build(10)
    labels = LabelsProvider(info())
    assert deep.ids.tolist() == labels.ids.tolist()


def test_several_roots_get_a_virtual_root():
    pairs = [("plant", "tree"), ("animal", "dog"), ("animal", "cat")]
    kw = dict(labels=[0, 1, 2], classes=["tree", "dog", "cat"])
    p = build(2, pairs=pairs, **kw)
    assert p.ancestors("dog") == ["<root>", "animal", "dog"]
    assert p.ancestors("tree") == ["<root>", "plant", "tree"]
    # level 2: animal (0) = {dog, cat}, plant (1) = {tree}
    assert p.ids.tolist() == [1, 0, 0]
    assert build(1, pairs=pairs, **kw).ids.tolist() == [0, 0, 0]
    assert build(3, pairs=pairs, **kw).ids.tolist() == [2, 1, 0]


def test_class_that_is_an_inner_node():
    # "mammal" as a class: at level 3 it is shallower than the level, so its own cluster
    p = build(3, labels=[0, 1], classes=["mammal", "dog"])
    assert p.ids.tolist() == [1, 0]
    assert build(2, labels=[0, 1], classes=["mammal", "dog"]).ids.tolist() == [0, 0]


def test_lookup_on_torch_indexes():
    assert build(2)(torch.tensor([3, 7, 0])).tolist() == [0, 4, 2]


def shortest_depths_by_enumeration(pairs):
    """Brute force: depth of a node = length of the shortest root->node path."""
    parents = {}
    for p, c in pairs:
        parents.setdefault(c, set()).add(p)
        parents.setdefault(p, set())

    def all_depths(node):
        if not parents[node]:
            return [0]
        return [d + 1 for p in parents[node] for d in all_depths(p)]

    return {n: min(all_depths(n)) for n in parents}, parents


@pytest.mark.parametrize("seed", range(6))
def test_random_dag_pruning_rule(seed):
    rng = random.Random(seed)
    nodes = [f"n{i:02d}" for i in range(14)]
    rng.shuffle(nodes)  # names uncorrelated with topological order
    pairs = []
    for i in range(1, len(nodes)):
        for j in rng.sample(range(i), k=min(i, rng.choice([1, 1, 2, 3]))):
            pairs.append((nodes[j], nodes[i]))  # edges go forward: acyclic, root nodes[0]
    depth, parents = shortest_depths_by_enumeration(pairs)
    tree = LabelTree(pairs, "random")
    for n in nodes:
        path = tree.ancestors(n)
        assert path[0] == nodes[0] and path[-1] == n
        assert len(path) - 1 == depth[n]  # tree depth = shortest DAG distance
        for parent, child in zip(path, path[1:]):
            assert parent in parents[child]
            best = min(parents[child], key=lambda q: (depth[q], q))
            assert parent == best


def test_pairs_file_wordnet_format_resolved_under_root(tmp_path):
    (tmp_path / "wordnet.is_a.txt").write_text(
        "# parent child\n"
        "n00001740 n00002137\n"
        "\n"
        "n00002137\tn01440764   # tench\n"
        "  n00002137   n01443537\n"
        "n00001740 n09999999\n"
    )
    labels = [0, 1, 2]
    classes = ["n01440764", "n01443537", "n09999999"]
    p = HierarchyProvider(info(labels, classes, root=str(tmp_path)),
                          pairs_file="wordnet.is_a.txt", level=2)
    assert p.ancestors("n01440764") == ["n00001740", "n00002137", "n01440764"]
    assert p.ids.tolist() == [0, 0, 1]
    assert "level 2 of" in p.describe() and "wordnet.is_a.txt" in p.describe()


def test_pairs_file_relative_to_cwd(tmp_path, monkeypatch):
    (tmp_path / "h.txt").write_text("r a\nr b\n")
    monkeypatch.chdir(tmp_path)
    p = HierarchyProvider(info([0, 1], ["a", "b"], root="/nonexistent"),
                          pairs_file="h.txt", level=1)
    assert p.ids.tolist() == [0, 0]


def test_read_pairs_malformed_line(tmp_path):
    path = tmp_path / "is_a.txt"
    path.write_text("a b\n# comment\na b c\n")
    with pytest.raises(ValueError, match=r"is_a\.txt:3: expected 'parent child'.*'a b c'"):
        read_pairs(str(path))
    with pytest.raises(ValueError, match=r"is_a\.txt:3:"):
        HierarchyProvider(info([0], ["b"]), pairs_file=str(path), level=1)


def test_read_pairs_single_field_line(tmp_path):
    path = tmp_path / "is_a.txt"
    path.write_text("lonely\n")
    with pytest.raises(ValueError, match=r"is_a\.txt:1: .*'lonely'"):
        read_pairs(str(path))


def test_cycle_names_its_nodes():
    pairs = [("r", "a"), ("a", "b"), ("b", "c"), ("c", "a")]
    with pytest.raises(ValueError, match=r"cycle in hierarchy pairs: a -> b -> c -> a"):
        build(1, pairs=pairs, labels=[0], classes=["a"])


def test_cycle_without_any_root():
    with pytest.raises(ValueError, match=r"cycle in hierarchy pairs: x -> y -> x"):
        build(1, pairs=[("x", "y"), ("y", "x")], labels=[0], classes=["x"])


def test_self_loop_is_a_cycle():
    with pytest.raises(ValueError, match=r"cycle in hierarchy pairs: q -> q"):
        build(1, pairs=[("r", "q"), ("q", "q")], labels=[0], classes=["q"])


def test_class_missing_from_tree_names_class_and_file(tmp_path):
    path = tmp_path / "is_a.txt"
    path.write_text("animal cat\n")
    with pytest.raises(ValueError, match=r"1 class name\(s\) not found in .*is_a\.txt: \['unicorn'\]"):
        HierarchyProvider(info([0, 1], ["cat", "unicorn"]), pairs_file=str(path), level=1)


@pytest.mark.parametrize("kw", [
    {"level": 1},
    {"level": 1, "pairs": [["a", "b"]], "pairs_file": "x.txt"},
])
def test_exactly_one_source(kw):
    with pytest.raises(ValueError, match="give exactly one of 'pairs_file'"):
        HierarchyProvider(info([0], ["b"]), **kw)


@pytest.mark.parametrize("level", [0, -2, "2", 1.5, True])
def test_bad_level(level):
    with pytest.raises(ValueError, match=r"'level' must be an integer >= 1, got"):
        build(level)


def test_level_required():
    with pytest.raises(ValueError, match=r"missing required parameter\(s\) \['level'\]"):
        HierarchyProvider(info(), pairs=PAIRS)


def test_missing_pairs_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pairs_file 'nope.txt' not found"):
        HierarchyProvider(info(root=str(tmp_path)), pairs_file="nope.txt", level=1)


@pytest.mark.parametrize("pairs, match", [
    ([["a"]], r"pairs\[0\] must be \[parent, child\]"),
    ([["a", "b"], ["a", 3]], r"pairs\[1\] must be \[parent, child\]"),
    ("a b", r"'pairs' must be a list"),
    ([], r"holds no \(parent, child\) pairs"),
])
def test_bad_pairs(pairs, match):
    with pytest.raises(ValueError, match=match):
        HierarchyProvider(info([0], ["b"]), pairs=pairs, level=1)


def test_needs_labels_and_class_names():
    with pytest.raises(ValueError, match="needs SampleInfo.labels"):
        HierarchyProvider(SampleInfo(num_samples=1, class_names=["b"]), pairs=[["a", "b"]], level=1)
    with pytest.raises(ValueError, match="needs SampleInfo.class_names"):
        HierarchyProvider(SampleInfo(num_samples=1, labels=np.array([0])), pairs=[["a", "b"]], level=1)


def test_label_without_class_name():
    with pytest.raises(ValueError, match=r"label 3 has no class name \(1 class_names\)"):
        HierarchyProvider(info([3], ["b"]), pairs=[["a", "b"]], level=1)


def test_reserved_virtual_root_name():
    with pytest.raises(ValueError, match="reserved name '<root>'"):
        LabelTree([("<root>", "a"), ("b", "c")])


def test_a_class_without_a_parent_is_an_error_not_a_level_shift():
    # "wolf" has no parent line: it would be a second root and shift every level by one
    pairs = [("animal", "dog"), ("animal", "cat")]
    with pytest.raises(ValueError, match=r"1 class\(es\) have no parent in pairs: \['wolf'\]"):
        HierarchyProvider(info(labels=[0, 1, 2], classes=["dog", "cat", "wolf"]),
                          pairs=[list(p) for p in pairs + [("wolf", "pup")]], level=2)


def test_several_roots_print_a_warning_that_names_the_level_shift(capsys):
    pairs = [("animal", "dog"), ("plant", "fern")]
    p = HierarchyProvider(info(labels=[0, 1], classes=["dog", "fern"]),
                          pairs=[list(x) for x in pairs], level=2)
    err = capsys.readouterr().err
    assert "warning: hierarchy pairs has 2 roots ['animal', 'plant']" in err
    assert "level 1 is '<root>'" in err
    assert p.ids.tolist() == [0, 1]  # level 2 = the two real roots
