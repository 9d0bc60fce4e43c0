"""The zoo command: lists, shows and checks the entries of ``zoo/manifest.json`` (the
manifest and ``pretrained=zoo:<name>`` are ``run/zoo.py``)::

    python -m clinfonce_plugin.zoo list            # one row per entry, and whether its file is here
    python -m clinfonce_plugin.zoo info <name>     # one entry, every field
    python -m clinfonce_plugin.zoo verify          # the sha256 of every file; exit 1 on a mismatch
"""
import argparse
import json
import os
import sys
from typing import List, Optional

from .run.zoo import ZOO_DIR, ZooError, entry_path, how_to_get, load_manifest, sha256sum


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


# the columns of ``list``: (header, entry key)
LIST_COLUMNS = (("name", None), ("method", "method"), ("dataset", "dataset"),
                ("backbone", "backbone"), ("linear top-1", "linear_top1"),
                ("paper linear top-1", "linear_paper_top1"), ("kNN top-1", "knn_top1"),
                ("MB", None), ("on disk", None))


def list_rows(zoo_dir: str) -> List[List[str]]:
    """The ``list`` table (header first): one row per entry in name order."""
    zoo_dir = os.path.realpath(zoo_dir)
    rows = [[header for header, _ in LIST_COLUMNS]]
    for name, entry in sorted(load_manifest(zoo_dir).items()):
        path = entry_path(name, entry, zoo_dir)
        here = os.path.isfile(path)
        size = entry.get("size", os.path.getsize(path) if here else None)
        rows.append([name] + [_cell(entry.get(key)) for _, key in LIST_COLUMNS[1:-2]]
                    + [f"{size / 2 ** 20:.1f}" if isinstance(size, int) else "-",
                       "yes" if here else "no"])
    return rows


def verify_all(zoo_dir: str) -> List[List[str]]:
    """[name, status, detail] for every entry: ``ok``, ``missing`` (with where to get it) or
    ``corrupt`` (with both hashes)."""
    zoo_dir = os.path.realpath(zoo_dir)
    report = []
    for name, entry in sorted(load_manifest(zoo_dir).items()):
        path = entry_path(name, entry, zoo_dir)
        if not os.path.isfile(path):
            report.append([name, "missing", f"{path}: {how_to_get(entry)}"])
            continue
        digest = sha256sum(path)
        if digest == entry["sha256"]:
            report.append([name, "ok", path])
        else:
            report.append([name, "corrupt", f"{path}: sha256 {digest}, manifest "
                                             f"{entry['sha256']}"])
    return report


def _print_table(rows: List[List[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def main(argv: Optional[List[str]] = None) -> int:
    """``list | info <name> | verify`` over ``--zoo-dir`` (default: this repository's zoo/).
    Returns the exit code: 0, 1 when verify finds a missing or corrupt file, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m clinfonce_plugin.zoo",
                                     description="the pretrained checkpoints of zoo/")
    parser.add_argument("--zoo-dir", default=ZOO_DIR, help="the zoo directory (manifest.json)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="one row per entry")
    info = commands.add_parser("info", help="every field of one entry")
    info.add_argument("name")
    commands.add_parser("verify", help="check the sha256 of every file")
    args = parser.parse_args(argv)
    zoo_dir = os.path.realpath(args.zoo_dir)
    try:
        if args.command == "list":
            rows = list_rows(zoo_dir)
            if len(rows) == 1:
                print(f"the zoo at {zoo_dir} has no entry (manifest.json is empty or absent)")
            else:
                _print_table(rows)
            return 0
        if args.command == "info":
            manifest = load_manifest(zoo_dir)
            if args.name not in manifest:
                raise ZooError(f"no zoo entry {args.name!r}. Zoo names: {sorted(manifest)}")
            entry = dict(manifest[args.name])
            path = entry_path(args.name, entry, zoo_dir)
            entry.update(name=args.name, path=path, on_disk=os.path.isfile(path))
            print(json.dumps(entry, indent=2, sort_keys=True))
            return 0
        report = verify_all(zoo_dir)
        for name, status, detail in report:
            print(f"{status:8s} {name}  {detail}")
        bad = [r for r in report if r[1] != "ok"]
        print(f"{len(report) - len(bad)} of {len(report)} zoo files verified")
        return 1 if bad else 0
    except ZooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
