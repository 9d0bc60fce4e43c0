"""Clusters from a label hierarchy: the ancestor of each sample's class at a chosen level.

Implements the hierarchy-based clustering of Cl-InfoNCE
(https://arxiv.org/abs/2202.06670, App. B): a class tree such as WordNet over the
ImageNet classes is cut at level l (root = level 1); every class below a level-l node
joins that node's cluster. Level 1 gives a single cluster; a level deeper than every
leaf gives the classes themselves.

A DAG (WordNet) becomes a tree by keeping, for each node, its parent of greatest depth
(longest distance from the root). For every class whose ancestry the official Cl-InfoNCE
code accepts (``imagenet_hierarchy.py``, ``select_subset_candidate``) this gives the same
ancestor at every level; the comparison is worked through in docs/methods.md.
"""
import sys
from collections import deque
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import REQUIRED, ClusterProvider, check_int, resolve_path
from .labels import checked_labels, group_with_singletons, require_some_known
from .sample_info import SampleInfo

VIRTUAL_ROOT = "<root>"


def read_pairs(path: str) -> List[Tuple[str, str]]:
    """Reads "parent child" pairs, one per line (the format of ImageNet's ``wordnet.is_a.txt``).

    Fields are whitespace separated; text after ``#`` is a comment; blank lines are skipped.

    Raises:
        ValueError: a line without exactly two fields, naming ``file:line`` and the line.
    """
    pairs: List[Tuple[str, str]] = []
    with open(path, encoding="utf-8-sig") as handle:  # a BOM some editors add is no name
        for number, raw in enumerate(handle, start=1):
            fields = raw.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{number}: expected 'parent child' (two whitespace-separated "
                    f"names), got {raw.rstrip(chr(10))!r}"
                )
            pairs.append((fields[0], fields[1]))
    return pairs


class LabelTree:
    """A rooted tree built from (parent, child) pairs that may form a DAG.

    Construction rules, in order:

    1. Nodes without a parent are roots. With more than one root a virtual root
       ``"<root>"`` is added above them, so there is always a single level-1 node.
    2. A cycle (including ``a a``) raises ValueError naming the nodes on it.
    3. DAG -> tree: a node with several parents keeps the parent of greatest depth,
       where a node's depth is its *longest* distance from the root; ties are broken by
       the lexicographically smallest parent name. A node's depth in the tree then
       equals its longest distance from the root in the DAG, the rule is deterministic
       and independent of file order, and a redundant edge (from a node that is also
       an ancestor of another parent) is never kept. This is the level of the official
       Cl-InfoNCE code, which counts levels along root-to-class paths and accepts a class
       only when those paths agree at every level except for such redundant edges.

    Attributes:
        root: the level-1 node (``"<root>"`` when there are several roots).
        roots: the nodes without a parent in the pairs, sorted.
        parent: node -> kept parent (None for the root).
        depth: node -> longest distance from the root (root 0).
        dag_parents: node -> every parent named in the pairs.

    Args:
        pairs: (parent, child) names.
        source: where the pairs come from, for error messages.
    """

    def __init__(self, pairs: Sequence[Tuple[str, str]], source: str = "pairs") -> None:
        self.source = source
        parents: Dict[str, set] = {}
        children: Dict[str, set] = {}
        for parent, child in pairs:
            if parent == child:
                raise ValueError(f"cycle in hierarchy {source}: {parent} -> {child}")
            parents.setdefault(parent, set())
            children.setdefault(child, set())
            parents.setdefault(child, set()).add(parent)
            children.setdefault(parent, set()).add(child)
        if not parents:
            raise ValueError(f"hierarchy {source} holds no (parent, child) pairs")
        self._check_acyclic(children, source)

        roots = sorted(node for node, ps in parents.items() if not ps)
        depth: Dict[str, int] = {}
        if len(roots) > 1:
            if VIRTUAL_ROOT in parents:
                raise ValueError(f"hierarchy {source} uses the reserved name {VIRTUAL_ROOT!r}")
            self.root = VIRTUAL_ROOT
            depth[VIRTUAL_ROOT] = 0
            start = 1
        else:
            self.root = roots[0]
            start = 0
        # longest distance from the root: Kahn's topological order, a node's depth is
        # final once all of its parents have been visited
        waiting = {node: len(ps) for node, ps in parents.items()}
        queue = deque(roots)
        for r in roots:
            depth[r] = start
        while queue:
            node = queue.popleft()
            for child in children[node]:
                depth[child] = max(depth.get(child, 0), depth[node] + 1)
                waiting[child] -= 1
                if waiting[child] == 0:
                    queue.append(child)

        self.parent: Dict[str, Optional[str]] = {self.root: None}
        for node, ps in parents.items():
            if ps:
                # deepest parent first, then the smallest name
                self.parent[node] = min(ps, key=lambda p: (-depth[p], p))
            elif node != self.root:
                self.parent[node] = VIRTUAL_ROOT
        self.depth = depth
        self.roots = roots
        self.dag_parents: Dict[str, set] = parents

    @staticmethod
    def _check_acyclic(children: Dict[str, set], source: str) -> None:
        color: Dict[str, int] = {}  # 1 = on the current DFS path, 2 = finished
        for start in sorted(children):
            if start in color:
                continue
            color[start] = 1
            path = [start]
            stack = [iter(sorted(children[start]))]
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    stack.pop()
                    color[path.pop()] = 2
                elif color.get(child) == 1:
                    cycle = path[path.index(child):] + [child]
                    raise ValueError(f"cycle in hierarchy {source}: {' -> '.join(cycle)}")
                elif child not in color:
                    color[child] = 1
                    path.append(child)
                    stack.append(iter(sorted(children[child])))

    def __contains__(self, name: str) -> bool:
        return name in self.parent

    def ancestors(self, name: str) -> List[str]:
        """Path root..name in the pruned tree (root is level 1, ``name`` is last)."""
        if name not in self.parent:
            raise ValueError(f"{name!r} is not a node of hierarchy {self.source}")
        path = [name]
        while self.parent[path[-1]] is not None:
            path.append(self.parent[path[-1]])
        return path[::-1]

    def ancestor_at(self, name: str, level: int) -> str:
        """The ancestor of ``name`` at ``level``; ``name`` itself if it is shallower."""
        path = self.ancestors(name)
        return path[level - 1] if level <= len(path) else path[-1]

    def is_ambiguous(self, name: str) -> bool:
        """True when the DAG paths root..``name`` disagree at some level by more than a
        redundant edge into ``name``: an ancestor on the kept path has a second parent,
        or ``name`` has a parent off its kept path. The official Cl-InfoNCE code drops
        such a class from its candidate classes; here it keeps the deepest-parent path."""
        path = self.ancestors(name)
        on_path = set(path)
        if any(p not in on_path for p in self.dag_parents.get(name, ())):
            return True
        return any(len(self.dag_parents.get(node, ())) > 1 for node in path[:-1])


def checked_pairs(pairs) -> List[Tuple[str, str]]:
    """``pairs`` as a list of (parent, child) strings, or ValueError naming the bad entry."""
    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__iter__"):
        raise ValueError(f"hierarchy: 'pairs' must be a list of [parent, child], got {pairs!r}")
    edges = []
    for i, pair in enumerate(pairs):
        items = list(pair) if hasattr(pair, "__iter__") and not isinstance(pair, str) else None
        if items is None or len(items) != 2 or not all(isinstance(x, str) for x in items):
            raise ValueError(
                f"hierarchy: pairs[{i}] must be [parent, child] (two strings), got {pair!r}"
            )
        edges.append((items[0], items[1]))
    return edges


def dataset_tree(info: SampleInfo, pairs_file: Optional[str] = None,
                 pairs=None) -> Tuple[LabelTree, str]:
    """The label tree of a dataset and a description of where it came from.

    Exactly one source is used: ``pairs_file`` (a "parent child" file, relative paths
    under ``info.root`` then the cwd), ``pairs`` (a list of [parent, child]), or, when
    both are None, the hierarchy the dataset itself provides (``info.hierarchy``, e.g.
    the CIFAR-100 superclasses).

    Checks that every class that labels a sample is a node with a parent, and prints a
    warning for several roots (outside dataset hierarchies, whose virtual root is part of
    their definition) and for classes with an ambiguous ancestry (``is_ambiguous``).
    """
    if pairs_file is not None and pairs is not None:
        raise ValueError(
            "hierarchy: give at most one of 'pairs_file' (a 'parent child' text file) "
            f"or 'pairs' (a list of [parent, child]); got pairs_file={pairs_file!r}, "
            "pairs=<list>")
    from_dataset = pairs_file is None and pairs is None
    if pairs_file is not None:
        source = resolve_path("hierarchy", "pairs_file", pairs_file, info.root)
        edges = read_pairs(source)
    elif pairs is not None:
        source = "pairs"
        edges = checked_pairs(pairs)
    else:
        if not info.hierarchy:
            raise ValueError(
                "hierarchy: this dataset provides no class hierarchy of its own (only "
                "cifar100 does: its 20 superclasses); give 'pairs_file' (a 'parent child' "
                "text file such as ImageNet's wordnet.is_a.txt) or 'pairs'")
        source = "the dataset's class hierarchy"
        edges = [(str(a), str(b)) for a, b in info.hierarchy]
    tree = LabelTree(edges, source)

    labels = checked_labels("hierarchy", info.labels)
    if info.class_names is None:
        raise ValueError("hierarchy: needs SampleInfo.class_names to place labels in the tree")
    class_names = [str(c) for c in info.class_names]
    if labels.size and labels.max() >= len(class_names):
        raise ValueError(
            f"hierarchy: label {int(labels.max())} has no class name "
            f"({len(class_names)} class_names)"
        )
    # only classes that label a sample need a place in the tree
    used = [class_names[i] for i in np.unique(labels[labels >= 0])]
    missing = [c for c in used if c not in tree]
    if missing:
        raise ValueError(
            f"hierarchy: {len(missing)} class name(s) not found in {source}: "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    orphans = [c for c in used if c in tree.roots]
    if orphans:
        # a class without a parent is its own root: it would add a virtual root above
        # every other root and shift what each level means
        raise ValueError(
            f"hierarchy: {len(orphans)} class(es) have no parent in {source}: "
            f"{orphans[:5]}{' ...' if len(orphans) > 5 else ''}; every class needs a "
            f"'parent class' line")
    if len(tree.roots) > 1 and not from_dataset:
        print(f"warning: hierarchy {source} has {len(tree.roots)} roots "
              f"{tree.roots[:5]}: a virtual root {VIRTUAL_ROOT!r} was added above "
              f"them, so level 1 is {VIRTUAL_ROOT!r} and level 2 holds those roots",
              file=sys.stderr)
    ambiguous = [c for c in used if tree.is_ambiguous(c)]
    if ambiguous:
        print(f"warning: hierarchy {source}: {len(ambiguous)} class(es) have several "
              f"paths to the root that disagree {ambiguous[:5]}"
              f"{' ...' if len(ambiguous) > 5 else ''}; each keeps its deepest parent "
              f"(the official Cl-InfoNCE code leaves such classes out of its class list)",
              file=sys.stderr)
    return tree, source


def class_levels(tree: LabelTree, info: SampleInfo) -> int:
    """The deepest level of a class that labels a sample: from that level on every class
    is its own cluster."""
    labels = np.asarray(info.labels)
    names = [str(info.class_names[i]) for i in np.unique(labels[labels >= 0])]
    return max((len(tree.ancestors(c)) for c in names), default=1)


def level_cluster_ids(tree: LabelTree, info: SampleInfo, level: int
                      ) -> Tuple[np.ndarray, List[Optional[str]]]:
    """(N,) contiguous cluster ids of the level-``level`` ancestors of the samples' classes
    (sorted by node name), unknown labels (-1) as singletons after them; and the K node
    names (None for the singletons)."""
    labels = np.asarray(info.labels, dtype=np.int64)
    class_names = [str(c) for c in info.class_names]
    known = labels >= 0
    used = np.unique(labels[known])
    by_class = np.empty(len(class_names), dtype=object)
    by_class[:] = ""
    for i in used:
        by_class[i] = tree.ancestor_at(class_names[i], level)
    if known.any():
        keys = np.array(by_class[np.where(known, labels, 0)], dtype=str)
    else:
        keys = np.full(labels.shape, "", dtype=str)
    ids = group_with_singletons(keys, known)
    k_known = int(ids[known].max()) + 1 if known.any() else 0
    names: List[Optional[str]] = sorted(set(keys[known].tolist()))
    names += [None] * (int(ids.max()) + 1 - k_known)
    return ids, names


SHOWN_TITLES = 5  # cluster names in the log line


class HierarchyProvider(ClusterProvider):
    """Implements hierarchy clusters (https://arxiv.org/abs/2202.06670, App. B).

    The leaf of a sample is ``info.class_names[label]``; its cluster is the leaf's
    ancestor at ``level`` in the tree built by ``LabelTree`` (root = level 1; several
    roots get a virtual root ``"<root>"``; a node with several parents keeps the one of
    greatest depth, ties by smallest name). A leaf shallower than ``level`` is its own
    cluster. Samples with label -1 get singleton clusters (a dataset with no label at all is
    refused). Every class that labels a sample must be a node of the tree.

    Extra cfg settings:
        pairs_file (str): "parent child" text file (``wordnet.is_a.txt`` format);
            relative paths are looked up under ``info.root`` then the cwd.
        pairs (list of [parent, child]): in-memory alternative. With neither of the two,
            the dataset's own hierarchy (``SampleInfo.hierarchy``: cifar100's 20
            superclasses) is used.
        level (int, required): cut level, >= 1.

    Attributes:
        tree: the pruned ``LabelTree``.
        cluster_names: K node names, cluster id -> node (None for unknown-label singletons).
        cluster_titles: the same nodes by readable name (``SampleInfo.titles``, e.g. the
            WordNet names of ImageNet wnids), for the log.
    """

    name = "hierarchy"
    PARAMS = {"pairs_file": None, "pairs": None, "level": REQUIRED}

    def _build(self) -> np.ndarray:
        level = check_int(self.name, "level", self.params["level"], 1)
        # unlabelled data first: that is the cause, whatever else the tree lacks
        require_some_known(self.name, checked_labels(self.name, self.info.labels))
        self.tree, self.source = dataset_tree(self.info, self.params["pairs_file"],
                                              self.params["pairs"])
        self.level = level
        ids, self.cluster_names = level_cluster_ids(self.tree, self.info, level)
        self.cluster_titles = [None if n is None else self.info.title(n)
                               for n in self.cluster_names]
        return ids

    def ancestors(self, name: str) -> List[str]:
        """Path root..name in the pruned tree (root = level 1)."""
        return self.tree.ancestors(name)

    def _describe_extra(self) -> str:
        named = [t for t in self.cluster_titles if t is not None]
        shown = "; ".join(named[:SHOWN_TITLES]) + ("; ..." if len(named) > SHOWN_TITLES else "")
        return f"level {self.level} of {self.source} ({shown})"
