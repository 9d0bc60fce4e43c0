"""zoo.py: manifest lookup, sha256 verification, clear errors; nothing downloaded."""
import hashlib
import json

import pytest

from clinfonce_plugin.zoo import load_manifest, resolve_pretrained


def _zoo(tmp_path, payload=b"weights", recorded=None):
    (tmp_path / "tiny.ckpt").write_bytes(payload)
    digest = recorded or hashlib.sha256(payload).hexdigest()
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"tiny": {"file": "tiny.ckpt", "sha256": digest},
         "absent": {"file": "absent.ckpt", "sha256": "0" * 64, "note": "copy it from X"}}))
    return tmp_path


def test_zoo_name_resolves_to_the_verified_file(tmp_path):
    zoo = _zoo(tmp_path)
    assert resolve_pretrained("tiny", zoo_dir=str(zoo)) == str(zoo / "tiny.ckpt")
    assert set(load_manifest(str(zoo))) == {"tiny", "absent"}


def test_existing_checkpoint_path_is_used_as_is(tmp_path):
    path = tmp_path / "run.ckpt"
    path.write_bytes(b"x")
    assert resolve_pretrained(str(path), zoo_dir=str(tmp_path)) == str(path)


def test_corrupt_zoo_file_is_refused(tmp_path):
    zoo = _zoo(tmp_path, recorded="f" * 64)
    with pytest.raises(ValueError, match="has sha256 .* the manifest records f{64}"):
        resolve_pretrained("tiny", zoo_dir=str(zoo))


def test_missing_zoo_file_and_unknown_name_are_clear_errors(tmp_path):
    zoo = _zoo(tmp_path)
    with pytest.raises(FileNotFoundError, match="not on disk: expected .*absent.ckpt .*copy it"):
        resolve_pretrained("absent", zoo_dir=str(zoo))
    with pytest.raises(FileNotFoundError, match=r"Zoo names: \['absent', 'tiny'\]"):
        resolve_pretrained("nope", zoo_dir=str(zoo))


def test_manifest_entry_without_hash_is_rejected(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"x": {"file": "x.ckpt"}}))
    with pytest.raises(ValueError, match="lacks 'sha256'"):
        load_manifest(str(tmp_path))
