"""Cluster ids read from a file, keyed by image path (csv) or in dataset order (npy).

Reads, among others, the cluster files published with Cl-InfoNCE
(https://arxiv.org/abs/2202.06670; github.com/Crazy-Jack/Cl-InfoNCE,
``data_processing/<dataset>/rank_H/meta_data_train.csv``). Those are pandas
``to_csv`` output: a first column with an empty header (the pandas index), a ``path``
column (image path relative to the dataset's image folder, e.g.
``001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg``), a ``class`` column and
one ``label_gran_<k>`` column per number k of top-entropy attributes, plus a final
summary row whose index is ``-1`` (number of distinct values per column), which is skipped.
"""
import csv
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .base import REQUIRED, ClusterProvider, check_int, contiguous, resolve_path

SUFFIX_DEPTH = 2  # class_dir/file: enough to identify an image in CUB, ImageNet, Wider


def _components(path: str) -> Tuple[str, ...]:
    return tuple(c for c in str(path).replace("\\", "/").split("/") if c not in ("", "."))


MAX_ID = 2 ** 62  # ids are stored as int64
RANGE_HINT = ("cluster ids must be integers in [0, 2**62): -1 means 'unknown' elsewhere in "
              "this project and is not a cluster; give every image an id (e.g. its own, "
              "unused number)")


def _parse_int(text: str) -> Optional[int]:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)  # pandas writes integer columns holding NaN as "3.0"
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def read_cluster_csv(path: str, column: Optional[str] = None, k: Optional[int] = None
                     ) -> Tuple[List[str], np.ndarray, str, List[int]]:
    """Reads (image key, cluster id) rows from a csv with a header row.

    The id column is ``column`` if given, else ``label_gran_<k>`` if ``k`` is given, else
    ``cluster``. A first column with an empty header is taken as a pandas index; rows whose
    index is ``-1`` (the summary row of the published files) are skipped.

    Returns:
        (keys, ids, id_column, line_numbers): image paths, (R,) int64 raw ids, the column
        used and the file line of each row.

    Raises:
        ValueError: no ``path`` column, no id column (listing the columns), a row with the
            wrong number of fields or a non-integer id (``file:line``), a duplicated path.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header row with a 'path' column")
        header = [h.strip() for h in header]
        if "path" not in header:
            raise ValueError(f"{path}:1: no 'path' column; columns are {header}")
        if column is not None:
            id_column = column
        elif k is not None:
            id_column = f"label_gran_{k}"
        else:
            id_column = "cluster"
        if id_column not in header:
            choices = [h for h in header if h and h != "path"]
            how = ("given as 'column'" if column is not None
                   else "from 'k'" if k is not None
                   else "the default when neither 'column' nor 'k' is given")
            raise ValueError(
                f"{path}:1: no id column {id_column!r} ({how}); columns are {choices}"
            )
        path_at, id_at = header.index("path"), header.index(id_column)
        has_index = header[0] == ""
        keys: List[str] = []
        ids: List[int] = []
        lines: List[int] = []
        seen: Dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not row or all(not field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{line}: expected {len(header)} comma-separated fields "
                    f"(columns {header}), got {len(row)}: {','.join(row)!r}"
                )
            if has_index and row[0].strip() == "-1":
                continue  # pandas summary row appended by the paper's preprocessing
            key = row[path_at].strip()
            value = _parse_int(row[id_at])
            if not key:
                raise ValueError(f"{path}:{line}: empty 'path' field")
            if value is None:
                raise ValueError(
                    f"{path}:{line}: column {id_column!r} must hold an integer id, "
                    f"got {row[id_at]!r}"
                )
            if not 0 <= value < MAX_ID:
                raise ValueError(f"{path}:{line}: column {id_column!r} holds {row[id_at]!r}: "
                                 f"{RANGE_HINT}")
            if key in seen:
                raise ValueError(f"{path}:{line}: path {key!r} already given on line {seen[key]}")
            seen[key] = line
            keys.append(key)
            ids.append(value)
            lines.append(line)
    if not keys:
        raise ValueError(f"{path}: no data rows after the header")
    return keys, np.asarray(ids, dtype=np.int64), id_column, lines


def match_paths(keys: List[str], paths: List[str], source: str) -> np.ndarray:
    """For each dataset path, the index of its row in ``keys``.

    A path matches a key with the same relative path (separators and ``./`` normalised).
    Otherwise it matches the keys that share its last two path components (class_dir/file:
    files written on another machine carry other prefixes, absolute or relative); among
    several such keys the one sharing the longest trailing part wins.

    Raises:
        ValueError: images without a row, or matched ambiguously (several equally good
            rows, or one row claimed by several images), with a count and the first few.
    """
    key_parts = [_components(k) for k in keys]
    exact = {parts: i for i, parts in enumerate(key_parts)}
    by_tail: Dict[Tuple[str, ...], List[int]] = {}
    for i, parts in enumerate(key_parts):
        by_tail.setdefault(parts[-SUFFIX_DEPTH:], []).append(i)

    rows = np.full(len(paths), -1, dtype=np.int64)
    missing: List[str] = []
    ambiguous: List[str] = []
    for j, p in enumerate(paths):
        parts = _components(p)
        if parts in exact:
            rows[j] = exact[parts]
            continue
        candidates = by_tail.get(parts[-SUFFIX_DEPTH:], [])
        if not candidates:
            missing.append(p)
            continue

        def shared(i: int) -> int:
            n = 0
            for a, b in zip(reversed(key_parts[i]), reversed(parts)):
                if a != b:
                    break
                n += 1
            return n

        scores = [shared(i) for i in candidates]
        best = max(scores)
        winners = [i for i, s in zip(candidates, scores) if s == best]
        if len(winners) > 1:
            ambiguous.append(f"{p} -> {' | '.join(keys[i] for i in winners[:3])}")
        else:
            rows[j] = winners[0]

    if missing:
        raise ValueError(
            f"precomputed: {len(missing)} of {len(paths)} dataset images have no row in "
            f"{source} (matched by relative path, then by the last {SUFFIX_DEPTH} path "
            f"components), e.g. {missing[:3]}"
        )
    if ambiguous:
        raise ValueError(
            f"precomputed: {len(ambiguous)} dataset images match several rows of {source} "
            f"equally well, e.g. {'; '.join(ambiguous[:3])}"
        )
    used, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        shared_rows = used[counts > 1]
        examples = [
            f"{keys[r]} <- {' | '.join(paths[j] for j in np.flatnonzero(rows == r)[:3])}"
            for r in shared_rows[:3]
        ]
        raise ValueError(
            f"precomputed: {len(shared_rows)} rows of {source} are matched by several "
            f"dataset images (ambiguous keys), e.g. {'; '.join(examples)}"
        )
    return rows


class PrecomputedProvider(ClusterProvider):
    """Cluster ids from a file, remapped to 0..K-1.

    Implements the file-based clusters used by the official Cl-InfoNCE code
    (https://arxiv.org/abs/2202.06670), which ships its attribute and hierarchy
    clusterings as csv files.

    Extra cfg settings:
        file (str, required): ``.npy`` with (N,) integer ids in dataset order, or ``.csv``
            with a header, a ``path`` column and an id column; relative paths are looked
            up under ``info.root`` then the cwd. Csv rows are matched to ``info.paths``
            (see ``match_paths``); rows for images outside the dataset are ignored.
        column (str, optional, csv only): the id column.
        k (int, optional, csv only): read column ``label_gran_<k>`` (the published
            files' clustering on the top-k attributes); not together with ``column``.
            With neither, the column ``cluster`` is read.
    """

    name = "precomputed"
    PARAMS = {"file": REQUIRED, "column": None, "k": None}

    def _build(self) -> np.ndarray:
        column, k = self.params["column"], self.params["k"]
        path = resolve_path(self.name, "file", self.params["file"], self.info.root)
        self.file = path
        self.column: Optional[str] = None
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npy":
            if column is not None or k is not None:
                raise ValueError(
                    f"precomputed: 'column' and 'k' apply to csv files only; "
                    f"got column={column!r}, k={k!r} for {path}"
                )
            return contiguous(self._read_npy(path))
        if ext != ".csv":
            raise ValueError(f"precomputed: file must end in .csv or .npy, got {path!r}")
        if column is not None and k is not None:
            raise ValueError(
                f"precomputed: give 'column' or 'k', not both; got column={column!r}, k={k!r}"
            )
        if column is not None and (not isinstance(column, str) or not column):
            raise ValueError(f"precomputed: 'column' must be a column name, got {column!r}")
        if k is not None:
            k = check_int(self.name, "k", k, 1)
        if self.info.paths is None:
            raise ValueError(
                "precomputed: a csv file is keyed by image path, but SampleInfo.paths is None"
            )
        keys, raw, self.column, _ = read_cluster_csv(path, column, k)
        rows = match_paths(keys, list(self.info.paths), path)
        return contiguous(raw[rows])

    def _read_npy(self, path: str) -> np.ndarray:
        try:
            values = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"precomputed: cannot read {path} as a numeric .npy: {err}") from None
        n = self.info.num_samples
        if values.ndim != 1 or values.shape[0] != n:
            raise ValueError(
                f"precomputed: {path} holds shape {values.shape}, expected ({n},): "
                "one cluster id per sample in dataset order"
            )
        if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
            raise ValueError(f"precomputed: {path} holds dtype {values.dtype}, expected integer ids")
        if np.issubdtype(values.dtype, np.floating):
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"precomputed: {path}[{i}] = {values[i].item()!r} is not an "
                                 f"integer id")
        out_of_range = (values < 0) | (values >= MAX_ID)
        if out_of_range.any():
            i = int(np.flatnonzero(out_of_range)[0])
            raise ValueError(f"precomputed: {path}[{i}] = {values[i].item()!r}: {RANGE_HINT}")
        return values.astype(np.int64)

    def _describe_extra(self) -> str:
        return f"column {self.column!r} of {self.file}" if self.column else f"{self.file}"
