"""Files written atomically: the content goes to ``<path>.tmp`` in the same folder, then one
``os.replace`` puts it at ``path``, so a reader, or a process killed mid-write, finds the
previous file or the new one, never half of one. An exception while writing removes the
temporary and leaves the previous file as it was.

The temporary is opened like the file itself would be (``open``: mode 0o666 less the umask),
so the written file has the permissions a plain ``open`` gives; an existing file at ``path``
is replaced. ``fsync=True`` flushes the content to disk before the rename (the resume
checkpoint: a crash of the machine right after the rename must not leave an empty file).
"""
import csv
import json
import os
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]


def temporary_of(path: PathLike) -> str:
    """The temporary beside ``path`` that its atomic write goes through."""
    return os.fspath(path) + ".tmp"


def _sync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_path(path: PathLike, fsync: bool = False, commit: bool = True) -> Iterator[str]:
    """Yields the temporary path for a writer that takes a path (``torch.save``, matplotlib's
    ``savefig`` with an explicit ``format``); on leaving the block it is renamed to ``path``,
    or removed when the block raised.

    ``commit=False``: this process only takes part in a collective write that another
    process commits (every rank calls Lightning's ``save_checkpoint``, rank 0 writes the
    file): the same temporary path is yielded and nothing is renamed or removed.
    """
    path = os.fspath(path)
    tmp = temporary_of(path)
    if not commit:
        yield tmp
        return
    try:
        yield tmp
        if fsync:
            _sync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_open(path: PathLike, mode: str = "w", fsync: bool = False, **open_kwargs):
    """``open(<temporary>, mode, **open_kwargs)`` (``encoding``, ``newline``) for writing;
    the closed file is renamed to ``path`` on leaving the block, removed when it raised."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a new file: mode must start with 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def atomic_write_text(path: PathLike, text: str, **open_kwargs) -> None:
    """``text`` written to ``path`` (``open_kwargs``: ``encoding``, ``newline``)."""
    with atomic_open(path, "w", **open_kwargs) as f:
        f.write(text)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """``data`` written to ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: PathLike, obj: Any, encoding: Optional[str] = None, **json_kwargs) -> None:
    """``json.dump(obj, f, **json_kwargs)`` to ``path`` (no newline after it)."""
    with atomic_open(path, "w", encoding=encoding) as f:
        json.dump(obj, f, **json_kwargs)


def atomic_write_csv(path: PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV file of ``csv.writer``'s default dialect (``\\r\\n`` line ends): the
    ``header`` row, then ``rows``, each value as ``csv`` writes it (``str``, None as empty)."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
