"""Pretrained checkpoints: ``zoo/manifest.json`` maps a name to a checkpoint file inside
``zoo/`` and its sha256. ``pretrained=zoo:<name>`` resolves only through the manifest and
verifies the hash; any other value is a file path. Nothing is downloaded: a checkpoint that
is not on disk is an error that says where to put it (and the entry's ``url``, if it names
one, to fetch it from by hand). The command over the manifest (list, info, verify) is
``clinfonce_plugin/zoo.py``."""
import hashlib
import json
import os
from typing import Dict, Optional

from ..errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO_DIR = os.path.join(REPO, "zoo")
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
    path = entry_path(name, entry, zoo_dir)
    if not os.path.isfile(path):
        raise ZooError(f"zoo checkpoint {name!r} is not on disk: expected {path} "
                       f"({how_to_get(entry)})")
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


def how_to_get(entry: dict) -> str:
    """Where a missing file comes from: the entry's note, its url (downloaded by hand: this
    package never downloads), or the default advice."""
    if entry.get("url"):
        return f"download {entry['url']} by hand and put it there"
    return entry.get("note", "copy the file there")


def entry_path(name: str, entry: dict, zoo_dir: str) -> str:
    path = os.path.realpath(os.path.join(zoo_dir, entry["file"]))
    if os.path.commonpath([path, zoo_dir]) != zoo_dir:
        raise ZooError(f"zoo entry {name!r}: file {entry['file']!r} points outside {zoo_dir}; "
                       f"zoo files must live inside the zoo directory")
    return path
