"""The life of a run directory ``<checkpoint.dir>/<method>/<name>``.

- A run writes into ``<name>.partial/`` (created by this module, with the marker file
  ``.clinfonce-run.json``) and, when it finishes, renames it to ``<name>/`` in one step.
- ``<name>.lock`` (exclusive create, holding pid, host and start time) keeps a second run of
  the same name out; a lock left by a dead process is reported and removed only when asked.
- Nothing is ever deleted: a replaced run (``overwrite=true``) is renamed to
  ``<name>.replaced-<UTC time>``; a directory without the marker is never touched.
"""
import datetime as _dt
import json
import os
import socket
import time
from typing import Optional

from ..errors import RunDirError, UserError

MARKER = ".clinfonce-run.json"
LAST = "last.ckpt"


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def aside_name(path: str) -> str:
    """A new name beside ``path`` for a run (or file) being replaced:
    ``<path>.replaced-<UTC time>``."""
    base = f"{path}.replaced-{_stamp()}"
    candidate, n = base, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


_GONE: dict = {}  # _read_lock: the lock was removed meanwhile


def unusable_dir(path: str, err: OSError, key: str = "checkpoint.dir") -> RunDirError:
    """The error for a directory of the run that cannot be created or written (``err``
    raised by the file system for ``path`` or a file in it), naming ``key`` it comes from."""
    cause = err.strerror or str(err)
    where = err.filename or path
    return RunDirError(f"{key}: cannot write the run's files under {path}: {cause} ({where}); "
                       f"give a writable directory")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """Paths and state transitions of one run (only global rank 0 calls the methods that
    change the file system)."""

    def __init__(self, root: str, method: str, name: str):
        self.final = os.path.join(root, method, name)
        self.partial = self.final + ".partial"
        self.lock = self.final + ".lock"
        self.name = name
        self._locked = False
        self._finished = False
        self._identity: Optional[tuple] = None  # (device, inode) of partial once started

    # ----------------------------------------------------------------- queries
    @property
    def last_checkpoint(self) -> str:
        return os.path.join(self.partial, LAST)

    @staticmethod
    def is_ours(path: str) -> bool:
        return os.path.isfile(os.path.join(path, MARKER))

    def _refuse_foreign(self, path: str) -> None:
        if os.path.lexists(path) and not self.is_ours(path):
            raise RunDirError(f"{path} exists and was not made by clinfonce-plugin (no {MARKER} "
                              f"inside): refusing to touch it; choose another name= or "
                              f"checkpoint.dir=")

    # ----------------------------------------------------------------- lock
    def acquire(self, break_lock: bool = False) -> None:
        """Takes the lock ``<name>.lock``. A lock left by a dead process on this host, or one
        that cannot be read (empty or not a lock record), is removed only with
        ``break_lock``; a live process's lock never is."""
        try:
            os.makedirs(os.path.dirname(self.lock), exist_ok=True)
        except OSError as err:
            raise unusable_dir(os.path.dirname(self.lock), err) from None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        for _ in range(3):
            if self._create_lock(record):
                self._locked = True
                return
            holder = self._read_lock()
            if holder is _GONE:  # released meanwhile: try again
                continue
            if holder is None:
                if break_lock:
                    print(f"[clinfonce] removing the unreadable lock {self.lock} (empty or "
                          f"not a lock record)")
                    self._remove_lock()
                    continue
                raise RunDirError(f"run {self.final} has an unreadable lock {self.lock} (empty "
                                  f"or not a lock record: its process was probably killed "
                                  f"while writing it); if no run of this name is running, "
                                  f"rerun with break_lock=true to remove it")
            stale = holder.get("host") == socket.gethostname() and \
                isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"])
            if break_lock and stale:
                print(f"[clinfonce] removing the stale lock {self.lock} of dead process "
                      f"{holder.get('pid')}")
                self._remove_lock()
                continue
            who = (f"process {holder.get('pid')} on {holder.get('host')} since "
                   f"{holder.get('started')}")
            if stale:
                raise RunDirError(f"run {self.final} has a stale lock {self.lock} left by "
                                  f"{who}, which is no longer running; rerun with "
                                  f"break_lock=true to remove it")
            raise RunDirError(f"run {self.final} is in use by {who} (lock {self.lock}); "
                              f"wait for it, or give this run another name=")
        raise RunDirError(f"could not take the lock {self.lock}")

    def _create_lock(self, record: dict) -> bool:
        """Creates the lock holding ``record`` in one step: the record is written to a file
        of this process, which is then hard-linked as the lock (the link fails when a lock
        exists), so the lock is never seen empty or half-written. False if a lock exists."""
        tmp = f"{self.lock}.{socket.gethostname()}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.lock)
            except FileExistsError:
                return False
            except OSError:
                # a file system without hard links: exclusive create, then write
                try:
                    fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w") as f:
                    json.dump(record, f)
            return True
        except OSError as err:
            raise unusable_dir(os.path.dirname(self.lock), err) from None
        finally:
            try:
                os.remove(tmp)
            except OSError:
                pass

    def _remove_lock(self) -> None:
        try:
            os.remove(self.lock)
        except FileNotFoundError:
            pass

    def _read_lock(self) -> Optional[dict]:
        """The lock's record; None when it cannot be read as one, ``_GONE`` when it no longer
        exists."""
        try:
            with open(self.lock) as f:
                record = json.load(f)
        except FileNotFoundError:
            return _GONE
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and "pid" in record else None

    def release(self) -> None:
        if self._locked:
            self._locked = False
            try:
                os.remove(self.lock)
            except FileNotFoundError:
                pass

    # ----------------------------------------------------------------- start
    def start(self, resume: bool = False, auto_resume: bool = False,
              max_hours: Optional[float] = None, resume_from: Optional[str] = None,
              overwrite: bool = False) -> Optional[str]:
        """Prepares ``partial`` for this run (see ``_start``) and remembers which directory
        it is, to tell later whether it was removed or replaced while the run trained."""
        ckpt = self._start(resume, auto_resume, max_hours, resume_from, overwrite)
        self._identity = self._current_identity()
        return ckpt

    def resumes(self, resume: bool = False, auto_resume: bool = False,
                max_hours: Optional[float] = None) -> bool:
        """Whether ``start`` with these arguments continues the interrupted run's
        ``last.ckpt`` (``resume``; ``auto_resume`` when it is at most ``max_hours`` old)."""
        if not (resume or auto_resume) or not os.path.isdir(self.partial) or \
                not os.path.isfile(self.last_checkpoint):
            return False
        return resume or max_hours is None or self._age_hours() <= max_hours

    def _age_hours(self) -> float:
        return (time.time() - os.path.getmtime(self.last_checkpoint)) / 3600

    def _current_identity(self) -> Optional[tuple]:
        try:
            stat = os.stat(self.partial)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _start(self, resume: bool, auto_resume: bool, max_hours: Optional[float],
               resume_from: Optional[str], overwrite: bool) -> Optional[str]:
        """Prepares ``partial`` for this run; returns the checkpoint to resume from, if any.

        - ``resume``: continue the interrupted run (its ``last.ckpt``); an error if none.
        - ``auto_resume``: the same when there is one younger than ``max_hours``, else start.
        - ``resume_from``: continue from that file (never deleted), in the interrupted run's
          directory if there is one.
        - ``overwrite``: allow replacing a finished run and setting aside an interrupted one.
        """
        self._refuse_foreign(self.final)
        self._refuse_foreign(self.partial)
        finished = os.path.isdir(self.final)
        interrupted = os.path.isdir(self.partial)
        if resume or auto_resume:
            if interrupted and os.path.isfile(self.last_checkpoint):
                if self.resumes(resume, auto_resume, max_hours):
                    print(f"[clinfonce] resuming {self.last_checkpoint}")
                    return self.last_checkpoint
                print(f"[clinfonce] auto_resume: {self.last_checkpoint} is "
                      f"{self._age_hours():.1f} h old "
                      f"(> auto_resume.max_hours={max_hours}): starting afresh")
            elif resume:
                if interrupted:
                    raise RunDirError(f"nothing to resume in {self.partial}: the run stopped "
                                      f"before its first checkpoint (checkpoint.frequency "
                                      f"epochs); start it again with overwrite=true")
                where = (f"the run finished: {self.final}" if finished else
                         f"no interrupted run {self.partial}")
                raise RunDirError(f"nothing to resume: {where}")
        if finished and not overwrite:
            raise RunDirError(f"a finished run exists at {self.final}: choose another name=, or "
                              f"overwrite=true to replace it (it is kept as "
                              f"{self.final}.replaced-<time>)")
        if interrupted:
            if resume_from is not None:
                return resume_from
            if not overwrite and not (auto_resume and not resume):
                raise RunDirError(f"an interrupted run exists at {self.partial}: continue it "
                                  f"with resume=true, or start afresh with overwrite=true (it "
                                  f"is kept as {self.partial}.replaced-<time>)")
            backup = aside_name(self.partial)
            os.rename(self.partial, backup)
            print(f"[clinfonce] the interrupted run was set aside as {backup}")
        try:
            os.makedirs(self.partial)
            with open(os.path.join(self.partial, MARKER), "w") as f:
                json.dump({"name": self.name, "created": _stamp(), "pid": os.getpid(),
                           "host": socket.gethostname()}, f)
        except OSError as err:
            raise unusable_dir(os.path.dirname(self.partial), err) from None
        return resume_from

    def failure(self, err: BaseException, when: str) -> Optional[RunDirError]:
        """The RunDirError to report instead of ``err``, raised while the run was writing its
        files (``when`` says at which point of the run), when ``err`` comes from its
        directory: the directory no longer exists or is no longer one, or a file system
        error on a path inside it (a full disk, a read-only file system); else None."""
        if self._finished or isinstance(err, UserError):
            return None
        inside = []
        if isinstance(err, OSError):
            top = os.path.abspath(self.partial)
            inside = [p for p in (err.filename, err.filename2) if isinstance(p, str) and
                      (os.path.abspath(p) == top or os.path.abspath(p).startswith(top + os.sep))]
        now = self._current_identity()
        same = now is not None and now == self._identity
        if not os.path.lexists(self.partial):
            cause = "it no longer exists (removed or moved while the run was training)"
        elif not os.path.isdir(self.partial):
            cause = "it is no longer a directory (replaced while the run was training)"
        elif self._identity is not None and not same:
            cause = ("it was removed or replaced while the run was training (the directory "
                     "there now is another one)")
        elif inside:
            cause = err.strerror or type(err).__name__
        else:
            return None
        inside = [p for p in inside if os.path.abspath(p) != os.path.abspath(self.partial)]
        what = f"; writing {inside[0]} failed ({err.strerror})" if inside else ""
        last = (f"its last checkpoint {self.last_checkpoint} is kept: continue with resume=true "
                f"once the directory is writable" if same and os.path.isfile(self.last_checkpoint)
                else "no checkpoint of the run is left")
        return RunDirError(f"the run directory {self.partial} became unusable {when}: "
                           f"{cause}{what}; {last}")

    # ----------------------------------------------------------------- finish
    def finish(self) -> str:
        """Moves the completed run into place; a finished run it replaces is renamed aside."""
        if os.path.isdir(self.final):
            self._refuse_foreign(self.final)
            backup = aside_name(self.final)
            os.rename(self.final, backup)
            print(f"[clinfonce] the previous run was kept as {backup}")
        os.replace(self.partial, self.final)
        self._finished = True
        return self.final
