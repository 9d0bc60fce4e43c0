"""hierarchy provider: ancestor at level l of a label tree (Cl-InfoNCE App. B)."""
import random

import numpy as np
import pytest
import torch

from clinfonce_plugin.clusters.hierarchy import HierarchyProvider, LabelTree, read_pairs
from clinfonce_plugin.clusters.sample_info import SampleInfo

# A DAG with two multi-parent nodes:
#   goldfish: parents fish (depth 2) and pet (depth 1) -> keeps fish (greater depth)
#   dog:      parents mammal and pet, both depth 1 -> keeps mammal (smaller name)
# Expected pruned tree (level = depth + 1):
#   L1 animal
#   L2 aquatic            bird      mammal        pet
#   L3 fish               sparrow   cat, dog
#   L4 goldfish, salmon
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
    assert p.ancestors("goldfish") == ["animal", "aquatic", "fish", "goldfish"]
    assert p.ancestors("dog") == ["animal", "mammal", "dog"]
    assert p.ancestors("salmon") == ["animal", "aquatic", "fish", "salmon"]
    assert p.ancestors("cat") == ["animal", "mammal", "cat"]
    assert p.ancestors("animal") == ["animal"]


@pytest.mark.parametrize("level, ids, names", [
    # one cluster for every labelled sample; the unknown (-1) sample is a singleton
    (1, [0, 0, 0, 0, 0, 0, 0, 1], ["animal", None]),
    # cat, dog -> mammal; goldfish, salmon -> aquatic; sparrow -> bird
    (2, [2, 2, 0, 0, 1, 2, 0, 3], ["aquatic", "bird", "mammal", None]),
    # goldfish, salmon -> fish; the others are their own level-3 node
    (3, [0, 1, 2, 2, 3, 1, 2, 4], ["cat", "dog", "fish", "sparrow", None]),
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
    assert build(2)(torch.tensor([3, 7, 0])).tolist() == [0, 3, 2]


def longest_depths_by_enumeration(pairs):
    """Brute force: depth of a node = length of the longest root->node path."""
    parents = {}
    for p, c in pairs:
        parents.setdefault(c, set()).add(p)
        parents.setdefault(p, set())

    def all_depths(node):
        if not parents[node]:
            return [0]
        return [d + 1 for p in parents[node] for d in all_depths(p)]

    return {n: max(all_depths(n)) for n in parents}, parents


@pytest.mark.parametrize("seed", range(6))
def test_random_dag_pruning_rule(seed):
    rng = random.Random(seed)
    nodes = [f"n{i:02d}" for i in range(14)]
    rng.shuffle(nodes)  # names uncorrelated with topological order
    pairs = []
    for i in range(1, len(nodes)):
        for j in rng.sample(range(i), k=min(i, rng.choice([1, 1, 2, 3]))):
            pairs.append((nodes[j], nodes[i]))  # edges go forward: acyclic, root nodes[0]
    depth, parents = longest_depths_by_enumeration(pairs)
    tree = LabelTree(pairs, "random")
    for n in nodes:
        path = tree.ancestors(n)
        assert path[0] == nodes[0] and path[-1] == n
        assert len(path) - 1 == depth[n]  # tree depth = longest DAG distance
        for parent, child in zip(path, path[1:]):
            assert parent in parents[child]
            best = min(parents[child], key=lambda q: (-depth[q], q))
            assert parent == best
        # where the official rule gives one answer, it is ours at every level
        official = official_level_sets(pairs, n)
        if all(len(s) <= 1 for s in official.values()):
            assert not tree.is_ambiguous(n)
            for level, ancestors in official.items():
                assert tree.ancestor_at(n, level) == (ancestors.pop() if ancestors else n)
        else:
            assert tree.is_ambiguous(n)


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


def test_at_most_one_source():
    with pytest.raises(ValueError, match="give at most one of 'pairs_file'"):
        HierarchyProvider(info([0], ["b"]), level=1, pairs=[["a", "b"]], pairs_file="x.txt")


def test_without_pairs_a_dataset_without_hierarchy_is_an_error():
    with pytest.raises(ValueError, match=r"this dataset provides no class hierarchy of its "
                                         r"own \(only cifar100 does.*give 'pairs_file'"):
        HierarchyProvider(info([0], ["b"]), level=1)


def test_without_pairs_the_dataset_hierarchy_is_used(capsys):
    # two superclasses, three classes; a virtual root sits above the superclasses
    i = SampleInfo(num_samples=4, labels=np.array([0, 1, 2, 2]), class_names=["x", "y", "z"],
                   hierarchy=[("A", "x"), ("A", "y"), ("B", "z")])
    assert HierarchyProvider(i, level=1).ids.tolist() == [0, 0, 0, 0]
    assert HierarchyProvider(i, level=2).ids.tolist() == [0, 0, 1, 1]
    assert HierarchyProvider(i, level=3).ids.tolist() == [0, 1, 2, 2]
    assert "roots" not in capsys.readouterr().err  # the virtual root is expected here


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


def official_level_sets(pairs, cls, levels=range(1, 12)):
    """The official Cl-InfoNCE rule spelled out on the DAG (imagenet_hierarchy.py,
    build_level_hierarchy + pruned_imgnet_is_a): every root->cls path is a branch of the
    unrolled tree with the root at level 1; at level l the candidates are the nodes at
    position l of the paths that go deeper than l. {level: set of candidates}; an empty
    set means the class is its own cluster, two or more mean the code drops the class."""
    parents = {}
    for p, c in pairs:
        parents.setdefault(c, set()).add(p)

    def paths(node):
        if node not in parents:
            return [[node]]
        return [q + [node] for p in parents[node] for q in paths(p)]

    every = paths(cls)
    return {level: {p[level - 1] for p in every if len(p) > level} for level in levels}


# The two pruning rules differ on a redundant edge into a class. r -> a -> b -> {c1, c3},
# r -> d -> c2, and the redundant a -> c1 (a is already an ancestor of c1 through b):
#   shortest-depth parent: c1 keeps a and sits at level 3 beside b
#   official / deepest:    c1 keeps b and sits at level 4 beside c3
SHORTCUT = [("r", "a"), ("a", "b"), ("b", "c1"), ("b", "c3"), ("a", "c1"), ("r", "d"),
            ("d", "c2")]


@pytest.mark.parametrize("level, ids, names", [
    # samples: c1, c2, c3
    (1, [0, 0, 0], ["r"]),
    (2, [0, 1, 0], ["a", "d"]),            # shortest rule: the same
    (3, [0, 1, 0], ["b", "c2"]),           # shortest rule: c1 | c2 | c3 -> b, 3 clusters
    (4, [0, 1, 2], ["c1", "c2", "c3"]),
])
def test_redundant_edge_into_a_class_follows_the_official_rule(level, ids, names, capsys):
    i = info(labels=[0, 1, 2], classes=["c1", "c2", "c3"])
    p = HierarchyProvider(i, pairs=[list(x) for x in SHORTCUT], level=level)
    assert p.ids.tolist() == ids and p.cluster_names == names
    assert p.ancestors("c1") == ["r", "a", "b", "c1"]
    official = official_level_sets(SHORTCUT, "c1", levels=[1, 2, 3, 4])
    assert official == {1: {"r"}, 2: {"a"}, 3: {"b"}, 4: set()}
    assert "several paths" not in capsys.readouterr().err  # the official code keeps c1 too


def test_a_class_the_official_code_would_drop_is_kept_with_a_warning(capsys):
    # c4 has parents d (depth 1) and b (depth 2) on different branches: the paths
    # disagree at level 2 (a vs d), so the official code drops it; here it keeps b
    pairs = SHORTCUT + [("d", "c4"), ("b", "c4")]
    assert official_level_sets(pairs, "c4", levels=[2])[2] == {"a", "d"}
    p = HierarchyProvider(info(labels=[0, 1], classes=["c2", "c4"]),
                          pairs=[list(x) for x in pairs], level=2)
    assert p.ancestors("c4") == ["r", "a", "b", "c4"]
    assert p.ids.tolist() == [1, 0] and p.cluster_names == ["a", "d"]
    err = capsys.readouterr().err
    assert "1 class(es) have several paths to the root that disagree ['c4']" in err


def test_only_classes_with_samples_need_a_node():
    # "unicorn" labels no sample, so its absence from the tree does not matter
    p = HierarchyProvider(info([0, 0], ["cat", "unicorn"]), pairs=[["animal", "cat"]], level=1)
    assert p.ids.tolist() == [0, 0]
