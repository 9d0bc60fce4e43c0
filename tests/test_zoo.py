"""zoo.py: manifest lookup only through zoo:<name>, files kept inside zoo/, sha256
verification, clear errors for malformed manifests; nothing downloaded."""
import hashlib
import json

import pytest

from clinfonce_plugin.run.zoo import ZooError, load_manifest, resolve_pretrained


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


# ----------------------------------------------------------------------------- command line


def _cli(capsys, *argv):
    from clinfonce_plugin.zoo import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_list_shows_each_entry_and_whether_its_file_is_here(tmp_path, capsys):
    zoo = _zoo(tmp_path, extra={"r18": {"file": "tiny.ckpt", "sha256": "1" * 64,
                                        "method": "simclr", "dataset": "synthetic_cub",
                                        "backbone": "resnet18", "linear_top1": 50.25,
                                        "size": 3 * 2 ** 20}})
    code, out, _ = _cli(capsys, "--zoo-dir", str(zoo), "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["name", "method", "dataset", "backbone"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert sorted(rows) == ["absent", "r18", "tiny"]
    # r18: recorded fields, the recorded size in MB, its file (tiny.ckpt) is on disk
    # the header's "linear top-1", "paper linear top-1", "kNN top-1" split into words
    assert rows["r18"] == ["r18", "simclr", "synthetic_cub", "resnet18", "50.2", "-", "-",
                           "3.0", "yes"]
    assert rows["absent"][-1] == "no" and rows["tiny"][-1] == "yes"
    assert rows["tiny"][-2] == f"{len(b'weights') / 2 ** 20:.1f}"  # measured when not recorded


def test_cli_info_prints_the_entry_and_refuses_unknown_names(tmp_path, capsys):
    zoo = _zoo(tmp_path)
    code, out, _ = _cli(capsys, "--zoo-dir", str(zoo), "info", "tiny")
    shown = json.loads(out)
    assert code == 0 and shown["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert shown["path"] == str(zoo / "tiny.ckpt") and shown["on_disk"] is True
    code, _, err = _cli(capsys, "--zoo-dir", str(zoo), "info", "nope")
    assert code == 2 and err.strip() == "error: no zoo entry 'nope'. Zoo names: ['absent', 'tiny']"


def test_cli_verify_finds_missing_and_corrupt_files(tmp_path, capsys):
    zoo = _zoo(tmp_path, extra={"bad": {"file": "tiny.ckpt", "sha256": "2" * 64},
                                "manual": {"file": "big.ckpt", "sha256": "3" * 64,
                                           "url": "https://example.org/big.ckpt"}})
    code, out, _ = _cli(capsys, "--zoo-dir", str(zoo), "verify")
    status = {line.split()[1]: line.split()[0] for line in out.splitlines()[:-1]}
    assert code == 1
    assert status == {"absent": "missing", "bad": "corrupt", "manual": "missing", "tiny": "ok"}
    assert "download https://example.org/big.ckpt by hand" in out
    assert out.splitlines()[-1] == "1 of 4 zoo files verified"
    (zoo / "manifest.json").write_text(json.dumps(
        {"tiny": {"file": "tiny.ckpt", "sha256": hashlib.sha256(b"weights").hexdigest()}}))
    assert _cli(capsys, "--zoo-dir", str(zoo), "verify")[0] == 0


def test_missing_file_with_a_url_says_to_download_it_by_hand(tmp_path):
    zoo = _zoo(tmp_path, extra={"manual": {"file": "big.ckpt", "sha256": "3" * 64,
                                           "url": "https://example.org/big.ckpt"}})
    with pytest.raises(ZooError, match=r"not on disk: expected .*big\.ckpt \(download "
                                       r"https://example\.org/big\.ckpt by hand"):
        resolve_pretrained("zoo:manual", zoo_dir=str(zoo))


def test_cli_runs_as_a_module_on_the_shipped_zoo():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "clinfonce_plugin.zoo", "verify"],
                          capture_output=True, text=True, timeout=120)
    manifest = load_manifest()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"{len(manifest)} of {len(manifest)} zoo files verified"
