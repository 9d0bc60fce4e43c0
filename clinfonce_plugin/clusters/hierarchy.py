"""Clusters from a label hierarchy: the ancestor of each sample's class at a chosen level.

Implements the hierarchy-based clustering of Cl-InfoNCE
(https://arxiv.org/abs/2202.06670, App. B): a class tree such as WordNet over the
ImageNet classes is cut at level l (root = level 1); every class below a level-l node
joins that node's cluster. Level 1 gives a single cluster; a level deeper than every
leaf gives the classes themselves.
"""
import sys
from collections import deque
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import REQUIRED, ClusterProvider, check_int, resolve_path
from .labels import checked_labels, group_with_singletons, require_some_known

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
    3. DAG -> tree: a node with several parents keeps the parent of smallest depth
       (shortest distance to a root), ties broken by the lexicographically smallest
       parent name. A node's depth in the tree then equals its shortest distance to the
       root in the DAG, so the rule is deterministic and independent of file order.

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
        if len(roots) > 1:
            if VIRTUAL_ROOT in parents:
                raise ValueError(f"hierarchy {source} uses the reserved name {VIRTUAL_ROOT!r}")
            self.root = VIRTUAL_ROOT
            depth = {VIRTUAL_ROOT: 0}
            queue = deque()
            for r in roots:
                depth[r] = 1
                queue.append(r)
        else:
            self.root = roots[0]
            depth = {self.root: 0}
            queue = deque([self.root])
        # multi-source BFS: depth = shortest distance to the root
        while queue:
            node = queue.popleft()
            for child in children[node]:
                if child not in depth:
                    depth[child] = depth[node] + 1
                    queue.append(child)

        self.parent: Dict[str, Optional[str]] = {self.root: None}
        for node, ps in parents.items():
            if ps:
                self.parent[node] = min(ps, key=lambda p: (depth[p], p))
            elif node != self.root:
                self.parent[node] = VIRTUAL_ROOT
        self.depth = depth
        self.roots = roots

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


class HierarchyProvider(ClusterProvider):
    """Implements hierarchy clusters (https://arxiv.org/abs/2202.06670, App. B).

    The leaf of a sample is ``info.class_names[label]``; its cluster is the leaf's
    ancestor at ``level`` in the tree built by ``LabelTree`` (root = level 1; several
    roots get a virtual root ``"<root>"``; a node with several parents keeps the one of
    smallest depth, ties by smallest name). A leaf shallower than ``level`` is its own
    cluster. Samples with label -1 get singleton clusters (a dataset with no label at all is
    refused). Every class name must be a node of the tree.

    Extra cfg settings:
        pairs_file (str): "parent child" text file (``wordnet.is_a.txt`` format);
            relative paths are looked up under ``info.root`` then the cwd.
        pairs (list of [parent, child]): in-memory alternative; give exactly one of the two.
        level (int, required): cut level, >= 1.

    Attributes:
        tree: the pruned ``LabelTree``.
        cluster_names: K node names, cluster id -> node (None for unknown-label singletons).
    """

    name = "hierarchy"
    PARAMS = {"pairs_file": None, "pairs": None, "level": REQUIRED}

    def _build(self) -> np.ndarray:
        pairs_file, pairs = self.params["pairs_file"], self.params["pairs"]
        if (pairs_file is None) == (pairs is None):
            raise ValueError(
                "hierarchy: give exactly one of 'pairs_file' (a 'parent child' text file) "
                f"or 'pairs' (a list of [parent, child]); got pairs_file={pairs_file!r}, "
                f"pairs={'<list>' if pairs is not None else None}"
            )
        level = check_int(self.name, "level", self.params["level"], 1)
        if pairs_file is not None:
            path = resolve_path(self.name, "pairs_file", pairs_file, self.info.root)
            source = path
            edges = read_pairs(path)
        else:
            source = "pairs"
            edges = self._checked_pairs(pairs)
        self.tree = LabelTree(edges, source)
        self.source = source
        self.level = level

        labels = checked_labels(self.name, self.info.labels)
        require_some_known(self.name, labels)
        class_names = self.info.class_names
        if class_names is None:
            raise ValueError("hierarchy: needs SampleInfo.class_names to place labels in the tree")
        class_names = [str(c) for c in class_names]
        missing = [c for c in class_names if c not in self.tree]
        if missing:
            raise ValueError(
                f"hierarchy: {len(missing)} class name(s) not found in {source}: "
                f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        orphans = [c for c in class_names if c in self.tree.roots]
        if orphans:
            # a class without a parent is its own root: it would add a virtual root above
            # every other root and shift what each level means
            raise ValueError(
                f"hierarchy: {len(orphans)} class(es) have no parent in {source}: "
                f"{orphans[:5]}{' ...' if len(orphans) > 5 else ''}; every class needs a "
                f"'parent class' line")
        if len(self.tree.roots) > 1:
            print(f"warning: hierarchy {source} has {len(self.tree.roots)} roots "
                  f"{self.tree.roots[:5]}: a virtual root {VIRTUAL_ROOT!r} was added above "
                  f"them, so level 1 is {VIRTUAL_ROOT!r} and level 2 holds those roots",
                  file=sys.stderr)
        if labels.size and labels.max() >= len(class_names):
            raise ValueError(
                f"hierarchy: label {int(labels.max())} has no class name "
                f"({len(class_names)} class_names)"
            )
        by_class = np.array([self.tree.ancestor_at(c, level) for c in class_names], dtype=object)
        known = labels >= 0
        if known.any():
            keys = np.array(by_class[np.where(known, labels, 0)], dtype=str)
        else:
            keys = np.full(labels.shape, "", dtype=str)
        ids = group_with_singletons(keys, known)
        k_known = int(ids[known].max()) + 1 if known.any() else 0
        self.cluster_names: List[Optional[str]] = sorted(set(keys[known].tolist()))
        self.cluster_names += [None] * (int(ids.max()) + 1 - k_known)
        return ids

    @staticmethod
    def _checked_pairs(pairs) -> List[Tuple[str, str]]:
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

    def ancestors(self, name: str) -> List[str]:
        """Path root..name in the pruned tree (root = level 1)."""
        return self.tree.ancestors(name)

    def _describe_extra(self) -> str:
        return f"level {self.level} of {self.source}"
