"""``study families``: the cluster families of a training split written as files that the
``precomputed`` cluster provider reads, with the information measures of each member."""
import csv
import os
from typing import Dict, List, Sequence

import numpy as np

from ..clusters.families import FAMILIES, FIXED, build_family, family_table
from ..errors import ConfigError, DataError, OutputExists
from ..utils.atomic import atomic_write_csv

TABLE_FIELDS = ("member", "clusters", "I(Z;T)", "H(Z|T)", "H(Z)")


def family_path(out_dir: str, family: str) -> str:
    return os.path.join(out_dir, f"{family}.csv")


def table_path(out_dir: str, family: str) -> str:
    return os.path.join(out_dir, f"{family}-table.csv")


def check_families(names: Sequence[str]) -> List[str]:
    """``names`` checked against ``FAMILIES``; ``all`` means every family."""
    names = list(names)
    if names == ["all"]:
        return list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ConfigError(f"--family: unknown family {unknown[0]!r}; choose from "
                          f"{list(FAMILIES)} or 'all'")
    return names


def write_families(names: Sequence[str], labels: np.ndarray, paths: List[str], out_dir: str,
                   branch: int = 2, overwrite: bool = False) -> Dict[str, List[dict]]:
    """Builds each family and writes ``<out_dir>/<family>.csv`` (columns ``path``, ``class``
    and one per member) and ``<out_dir>/<family>-table.csv`` (I(Z;T), H(Z|T), H(Z) in bits
    per member). Every family is built before anything is written.

    Returns:
        {family: table rows (``family_table``)}.

    Raises:
        DataError: a family that cannot be built from these labels (too few classes).
        OutputExists: an output file exists and ``overwrite`` is false.
    """
    built = {}
    for name in names:
        try:
            built[name] = build_family(name, labels, branch=branch)
        except ValueError as err:
            raise DataError(f"--family {name}: cannot be built from the {labels.size} training "
                            f"labels: {err}") from None
    outputs = [p for n in names for p in (family_path(out_dir, n), table_path(out_dir, n))]
    existing = [p for p in outputs if os.path.exists(p)]
    if existing and not overwrite:
        raise OutputExists(f"{existing[0]} exists; pass --overwrite to replace it")
    os.makedirs(out_dir, exist_ok=True)
    tables = {}
    for name, members in built.items():
        columns = list(members)
        data = np.stack([labels] + [members[c] for c in columns], axis=1)
        atomic_write_csv(family_path(out_dir, name), ["path", "class"] + columns,
                         ([p] + row.tolist() for p, row in zip(paths, data)))
        table = family_table(members, labels)
        atomic_write_csv(table_path(out_dir, name), TABLE_FIELDS,
                         ([r[k] if k in ("member", "clusters") else f"{r[k]:.12g}"
                           for k in TABLE_FIELDS] for r in table))
        tables[name] = table
    return tables


def read_table(path: str) -> List[dict]:
    """The rows of a ``<family>-table.csv`` (measures as floats)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["clusters"] = int(r["clusters"])
        for k in TABLE_FIELDS[2:]:
            r[k] = float(r[k])
    return rows


def format_tables(tables: Dict[str, List[dict]]) -> str:
    lines = []
    for name, rows in tables.items():
        lines.append(f"{name} (fixed {FIXED[name]}; bits)")
        lines.append(f"  {'member':<20} {'clusters':>8} {'I(Z;T)':>9} {'H(Z|T)':>9} {'H(Z)':>9}")
        for r in rows:
            lines.append(f"  {r['member']:<20} {r['clusters']:>8} {r['I(Z;T)']:>9.4f} "
                         f"{r['H(Z|T)']:>9.4f} {r['H(Z)']:>9.4f}")
    return "\n".join(lines)
