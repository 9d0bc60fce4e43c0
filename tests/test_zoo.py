"""zoo.py: manifest lookup only through zoo:<name>, files kept inside zoo/, sha256
verification, clear errors for malformed manifests; nothing downloaded."""
import hashlib
import json

import pytest

from clinfonce_plugin.zoo import ZooError, load_manifest, resolve_pretrained


def _zoo(tmp_path, payload=b"weights", recorded=None, extra=None):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "tiny.ckpt").write_bytes(payload)
    digest = recorded or hashlib.sha256(payload).hexdigest()
    manifest = {"tiny": {"file": "tiny.ckpt", "sha256": digest},
                "absent": {"file": "absent.ckpt", "sha256": "0" * 64, "note": "copy it from X"}}
    manifest.update(extra or {})
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    return zoo


def test_zoo_name_resolves_to_the_verified_file(tmp_path):
    zoo = _zoo(tmp_path)
    assert resolve_pretrained("zoo:tiny", zoo_dir=str(zoo)) == str(zoo / "tiny.ckpt")
    assert set(load_manifest(str(zoo))) == {"tiny", "absent"}


def test_a_file_named_like_a_zoo_entry_does_not_replace_it(tmp_path, monkeypatch):
    zoo = _zoo(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_bytes(b"impostor")
    assert resolve_pretrained("zoo:tiny", zoo_dir=str(zoo)) == str(zoo / "tiny.ckpt")
    # the bare name is a path (the user's own file), never a zoo lookup
    assert resolve_pretrained("tiny", zoo_dir=str(zoo)) == "tiny"
    (tmp_path / "tiny").unlink()
    with pytest.raises(ZooError, match="no such checkpoint file; to use the zoo entry of that "
                                       "name write pretrained=zoo:tiny"):
        resolve_pretrained("tiny", zoo_dir=str(zoo))


def test_zoo_files_must_stay_inside_the_zoo(tmp_path):
    outside = tmp_path / "elsewhere.ckpt"
    outside.write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    zoo = _zoo(tmp_path, extra={"escape": {"file": "../elsewhere.ckpt", "sha256": digest}})
    with pytest.raises(ZooError, match="points outside"):
        resolve_pretrained("zoo:escape", zoo_dir=str(zoo))
    (zoo / "link.ckpt").symlink_to(outside)
    (zoo / "manifest.json").write_text(json.dumps({"link": {"file": "link.ckpt",
                                                            "sha256": digest}}))
    with pytest.raises(ZooError, match="points outside"):
        resolve_pretrained("zoo:link", zoo_dir=str(zoo))


def test_existing_checkpoint_path_is_used_as_is(tmp_path):
    path = tmp_path / "run.ckpt"
    path.write_bytes(b"x")
    assert resolve_pretrained(str(path), zoo_dir=str(tmp_path)) == str(path)


def test_corrupt_zoo_file_is_refused(tmp_path):
    zoo = _zoo(tmp_path, recorded="f" * 64)
    with pytest.raises(ZooError, match="has sha256 .* the manifest records f{64}"):
        resolve_pretrained("zoo:tiny", zoo_dir=str(zoo))


def test_upper_case_sha256_and_a_bom_are_accepted(tmp_path):
    zoo = _zoo(tmp_path)
    digest = hashlib.sha256(b"weights").hexdigest().upper()
    text = json.dumps({"tiny": {"file": "tiny.ckpt", "sha256": digest}})
    (zoo / "manifest.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert resolve_pretrained("zoo:tiny", zoo_dir=str(zoo)) == str(zoo / "tiny.ckpt")


def test_missing_zoo_file_and_unknown_name_are_clear_errors(tmp_path):
    zoo = _zoo(tmp_path)
    with pytest.raises(ZooError, match="not on disk: expected .*absent.ckpt .*copy it"):
        resolve_pretrained("zoo:absent", zoo_dir=str(zoo))
    with pytest.raises(ZooError, match=r"Zoo names: \['absent', 'tiny'\]"):
        resolve_pretrained("zoo:nope", zoo_dir=str(zoo))


@pytest.mark.parametrize("text,match", [
    ('{"x": {"file": "x.ckpt"}}', "lacks 'sha256'"),
    ('{"x": {"file": "x.ckpt", "sha256": "abc"}}', "sha256 must be 64 hex digits"),
    ('{"x": {"file": "x.ckpt",\n "sha256": }}', r"manifest.json:2:12: invalid JSON: Expecting value"),
    ('["x"]', "expected a JSON object"),
])
def test_malformed_manifests_are_named_errors(tmp_path, text, match):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ZooError, match=match):
        load_manifest(str(tmp_path))
