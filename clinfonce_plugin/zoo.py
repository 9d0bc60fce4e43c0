"""Pretrained checkpoints: ``zoo/manifest.json`` maps a name to a checkpoint file inside
``zoo/`` and its sha256. ``pretrained=zoo:<name>`` resolves only through the manifest and
verifies the hash; any other value is a file path. Nothing is downloaded: a checkpoint that
is not on disk is an error that says where to put it (and the entry's ``url``, if it names
one, to fetch it from by hand).

The command line lists, shows and checks the entries::

    python -m clinfonce_plugin.zoo list            # one row per entry, and whether its file is here
    python -m clinfonce_plugin.zoo info <name>     # one entry, every field
    python -m clinfonce_plugin.zoo verify          # the sha256 of every file; exit 1 on a mismatch
"""
import argparse
import hashlib
import json
import os
import sys
from typing import Dict, List, Optional

from .errors import UserError

ZOO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")
PREFIX = "zoo:"


class ZooError(UserError):
    """The zoo manifest or one of its files is wrong."""


def load_manifest(zoo_dir: str = ZOO_DIR) -> Dict[str, dict]:
    """The manifest as {name: entry}; each entry has a ``file`` and a ``sha256``."""
    path = os.path.join(zoo_dir, "manifest.json")
    if not os.path.isfile(path):
        return {}
    with open(path, "rb") as f:
        raw = f.read()
    try:
        # a UTF-8 byte-order mark (some editors add one) is accepted
        manifest = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ZooError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    if not isinstance(manifest, dict):
        raise ZooError(f"{path}: expected a JSON object {{name: entry}}, got "
                       f"{type(manifest).__name__}")
    for name, entry in manifest.items():
        if not isinstance(entry, dict):
            raise ZooError(f"{path}: entry {name!r} must be an object with 'file' and 'sha256'")
        for key in ("file", "sha256"):
            if not isinstance(entry.get(key), str):
                raise ZooError(f"{path}: entry {name!r} lacks {key!r} (a string)")
        digest = entry["sha256"].strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ZooError(f"{path}: entry {name!r}: sha256 must be 64 hex digits, got "
                           f"{entry['sha256']!r}")
        entry["sha256"] = digest
    return manifest


def sha256sum(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def zoo_file(name: str, zoo_dir: Optional[str] = None) -> str:
    """The verified local file of zoo entry ``name`` (inside the zoo directory)."""
    zoo_dir = os.path.realpath(zoo_dir or ZOO_DIR)
    manifest = load_manifest(zoo_dir)
    if name not in manifest:
        raise ZooError(f"pretrained=zoo:{name}: no such zoo entry. Zoo names: {sorted(manifest)}")
    entry = manifest[name]
    path = _entry_path(name, entry, zoo_dir)
    if not os.path.isfile(path):
        raise ZooError(f"zoo checkpoint {name!r} is not on disk: expected {path} "
                       f"({_how_to_get(entry)})")
    digest = sha256sum(path)
    if digest != entry["sha256"]:
        raise ZooError(f"zoo checkpoint {path} has sha256 {digest}, the manifest records "
                       f"{entry['sha256']}: the file is corrupt or was replaced")
    return path


def resolve_pretrained(spec: str, zoo_dir: Optional[str] = None) -> str:
    """``zoo:<name>`` -> the verified zoo file; anything else -> that existing file."""
    if spec.startswith(PREFIX):
        return zoo_file(spec[len(PREFIX):], zoo_dir)
    if os.path.isfile(spec):
        return spec
    hint = ""
    if spec in load_manifest(os.path.realpath(zoo_dir or ZOO_DIR)):
        hint = f"; to use the zoo entry of that name write pretrained=zoo:{spec}"
    raise ZooError(f"pretrained={spec!r}: no such checkpoint file{hint}")


# where evaluations of a zoo model write their results (zoo/ itself only holds the shipped files)
ZOO_RESULTS_DIR = os.path.join("trained_models", "zoo")


def default_output_dir(spec: str, ckpt: str) -> str:
    """Where an evaluation of ``pretrained=spec`` writes by default: beside a checkpoint file,
    or ``trained_models/zoo/`` (relative to the working directory) for a zoo entry."""
    if spec.startswith(PREFIX):
        return ZOO_RESULTS_DIR
    return os.path.dirname(os.path.abspath(ckpt))


def _how_to_get(entry: dict) -> str:
    """Where a missing file comes from: the entry's note, its url (downloaded by hand: this
    package never downloads), or the default advice."""
    if entry.get("url"):
        return f"download {entry['url']} by hand and put it there"
    return entry.get("note", "copy the file there")


def _entry_path(name: str, entry: dict, zoo_dir: str) -> str:
    path = os.path.realpath(os.path.join(zoo_dir, entry["file"]))
    if os.path.commonpath([path, zoo_dir]) != zoo_dir:
        raise ZooError(f"zoo entry {name!r}: file {entry['file']!r} points outside {zoo_dir}; "
                       f"zoo files must live inside the zoo directory")
    return path


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
        path = _entry_path(name, entry, zoo_dir)
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
        path = _entry_path(name, entry, zoo_dir)
        if not os.path.isfile(path):
            report.append([name, "missing", f"{path}: {_how_to_get(entry)}"])
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
            path = _entry_path(args.name, entry, zoo_dir)
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
