"""utils/atomic.py: the file appears whole at its path or not at all, no temporary is left
beside it (after success or an exception mid-write, which keeps the previous file), and the
file has the bytes and the permissions that a plain ``open`` would give it."""
import json
import os
import stat

import pytest
import torch

from clinfonce_plugin.utils.atomic import (atomic_open, atomic_path, atomic_write_bytes,
                                           atomic_write_csv, atomic_write_json,
                                           atomic_write_text, temporary_of)


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_text_bytes_and_json_written_whole_with_nothing_beside(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one\ntwo\n")
    atomic_write_text(tmp_path / "b.txt", "one\ntwo", newline="\r\n", encoding="utf-8")
    atomic_write_bytes(tmp_path / "c.bin", b"\x00\xffdata")
    obj = {"b": [1, 2.5, None], "a": "é"}
    atomic_write_json(tmp_path / "d.json", obj, indent=2, sort_keys=True)
    assert read(tmp_path / "a.txt") == b"one\ntwo\n"
    assert read(tmp_path / "b.txt") == b"one\r\ntwo"
    assert read(tmp_path / "c.bin") == b"\x00\xffdata"
    assert read(tmp_path / "d.json").decode() == json.dumps(obj, indent=2, sort_keys=True)
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt", "c.bin", "d.json"]


def test_an_existing_file_is_replaced(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old content, longer than the new one")
    atomic_write_json(path, [1])
    assert read(path) == b"[1]"
    assert os.listdir(tmp_path) == ["f.json"]


@pytest.mark.parametrize("fsync", [False, True])
def test_exception_mid_write_keeps_the_old_file_and_no_temporary(tmp_path, fsync):
    path = tmp_path / "f.txt"
    path.write_bytes(b"previous\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(path, "w", fsync=fsync) as f:
            f.write("half of the new")
            f.flush()
            assert os.path.getsize(temporary_of(path)) == len("half of the new")
            raise RuntimeError("disk full")
    assert read(path) == b"previous\n"
    assert os.listdir(tmp_path) == ["f.txt"]

    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path, fsync=fsync) as tmp:
            torch.save({"w": torch.arange(10)}, tmp)
            raise KeyboardInterrupt
    assert read(path) == b"previous\n"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_path_for_a_writer_that_takes_a_path(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"older weights")
    with atomic_path(path, fsync=True) as tmp:
        assert tmp == str(path) + ".tmp" and os.path.dirname(tmp) == str(tmp_path)
        torch.save({"w": torch.arange(5)}, tmp)
        assert read(path) == b"older weights"  # not in place before the block ends
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(5))
    assert os.listdir(tmp_path) == ["w.pt"]


def test_without_commit_nothing_is_renamed_or_removed(tmp_path):
    """A rank that only takes part in a collective write: the writing rank commits."""
    path = tmp_path / "last.ckpt"
    with atomic_path(path, commit=False) as tmp:
        with open(tmp, "w") as f:
            f.write("x")
    assert os.listdir(tmp_path) == ["last.ckpt.tmp"]
    with pytest.raises(RuntimeError):
        with atomic_path(path, commit=False) as tmp:
            raise RuntimeError
    assert os.listdir(tmp_path) == ["last.ckpt.tmp"]


def test_mode_is_that_of_a_plain_open(tmp_path, umask_027):
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as f:
        f.write("x")
    path = tmp_path / "f.txt"
    path.write_text("old")
    os.chmod(path, 0o600)  # the new file does not inherit the replaced one's mode (as before)
    atomic_write_text(path, "new")
    with atomic_path(tmp_path / "w.pt") as tmp:
        torch.save({}, tmp)
    expected = 0o666 & ~umask_027
    assert stat.S_IMODE(os.stat(plain).st_mode) == expected == 0o640
    assert stat.S_IMODE(os.stat(path).st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "w.pt").st_mode) == expected


def test_atomic_open_refuses_a_mode_that_does_not_write_a_new_file(tmp_path):
    with pytest.raises(ValueError, match="'a'"):
        with atomic_open(tmp_path / "f", "a"):
            pass
    assert os.listdir(tmp_path) == []


def test_csv_text_of_a_small_table(tmp_path):
    path = tmp_path / "t.csv"
    atomic_write_csv(path, ["name", "x"],
                     iter([["a,b", 1], ['say "hi"', None], ["c", 2.5], ["two\nlines", -0.0]]))
    assert read(path) == (b'name,x\r\n"a,b",1\r\n"say ""hi""",\r\nc,2.5\r\n'
                          b'"two\nlines",-0.0\r\n')
    assert os.listdir(tmp_path) == ["t.csv"]
