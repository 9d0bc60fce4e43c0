"""Pretrained checkpoints: ``zoo/manifest.json`` maps a name to a checkpoint file (relative to
``zoo/``) and its sha256; loading verifies the hash. Nothing is downloaded: a checkpoint that
is not on disk is an error that says where to put it."""
import hashlib
import json
import os
from typing import Dict, Optional

ZOO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")


def load_manifest(zoo_dir: str = ZOO_DIR) -> Dict[str, dict]:
    path = os.path.join(zoo_dir, "manifest.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        manifest = json.load(f)
    for name, entry in manifest.items():
        for key in ("file", "sha256"):
            if key not in entry:
                raise ValueError(f"{path}: entry {name!r} lacks {key!r}")
    return manifest


def sha256sum(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_pretrained(name_or_path: str, zoo_dir: Optional[str] = None) -> str:
    """A ``.ckpt`` path is returned as is (it must exist); a zoo name is looked up in the
    manifest, its file checked against the recorded sha256."""
    zoo_dir = zoo_dir or ZOO_DIR
    if os.path.isfile(name_or_path):
        return name_or_path
    manifest = load_manifest(zoo_dir)
    if name_or_path not in manifest:
        raise FileNotFoundError(
            f"pretrained={name_or_path!r} is neither an existing checkpoint file nor a zoo "
            f"name. Zoo names: {sorted(manifest)}"
        )
    entry = manifest[name_or_path]
    path = os.path.join(zoo_dir, entry["file"])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"zoo checkpoint {name_or_path!r} is not on disk: expected {path} "
            f"({entry.get('note', 'copy the file there')})"
        )
    digest = sha256sum(path)
    if digest != entry["sha256"]:
        raise ValueError(f"zoo checkpoint {path} has sha256 {digest}, the manifest records "
                         f"{entry['sha256']}: the file is corrupt or was replaced")
    return path
