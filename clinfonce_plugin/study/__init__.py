"""The information-theoretic study of Cl-InfoNCE (https://arxiv.org/abs/2202.06670, Sec. 4.2,
Figs. 3, 4 and 6, App. H) as one command, ``python -m clinfonce_plugin.study``:

- ``families``: cluster families with one of I(Z;T), H(Z|T), H(Z) held fixed, built from a
  dataset's training labels (``clusters.families``), written as precomputed-cluster files
  with a table of the three measures per member;
- ``sweep``: Cl-InfoNCE trained on every member of a family, every k of a k-means list or
  every level of a hierarchy, each run evaluated by the linear and kNN protocols, one JSON
  row per run, resumable;
- ``plot``: accuracy against I(Z;T) and H(Z|T) (Fig. 3), against k (Fig. 4) and against
  the hierarchy level (Fig. 6), PNG plus the CSV behind each.

See docs/study.md.
"""
