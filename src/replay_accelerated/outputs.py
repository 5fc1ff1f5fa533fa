"""Output files that are complete or absent, folders with one writer at a time.

- `atomic_path`: a file is written under a temporary name beside its place and renamed over it only
  when the write succeeded, so a reader never sees half a file and a failed write (a full disk, a
  killed process) leaves the earlier file as it was.
- `check_writable`: a folder can be created and written, probed with a file name of this process's
  own, so that two processes probing one folder never trip over each other's probe.
- `check_output_path` and `writing`: a mode's output (infer's file, the folders of embeddings and
  export) is checked before any work, and a failed write stops with an error naming it.
- `FolderLock`: one process at a time writes a run's folders (`fcntl.flock`, released by the
  kernel when the process ends, however it ends).
"""

import contextlib
import errno
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from replay_accelerated.errors import UserError


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path` to write to; when the block ends without an error it replaces
    `path` in one rename, otherwise it is removed and `path` is left as it was."""
    path = Path(path)
    temporary = _temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def check_writable(folder: Path | str, key: str) -> None:
    """`folder` can be created and written, or a UserError naming it and the setting `key` to change."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _temporary_name(folder / ".write_test")
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to {folder} ({error.strerror or error}); "
                        f"set {key} to a folder you can write") from None


def check_output_path(path: Path, key: str, folder: bool = False) -> None:
    """The output file (or, with `folder`, the output folder) that `key` names can be written there: not a
    folder where a file goes, nor a file where a folder goes, in a folder that can be created and written."""
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{key}={path} is a file, but it names the folder the outputs are written into; "
                        "name a folder (it is created if missing)")
    if not folder and path.is_dir():
        raise UserError(f"{key}={path} is a folder; name the file to write, e.g. {key}={path / 'out.parquet'}")
    check_writable(path if folder else path.parent, key)


@contextlib.contextmanager
def writing(path: Path, key: str) -> Iterator[None]:
    """Around the writes of the output `path` (a file or a folder) through outputs.atomic_path: a write that
    fails (a full disk) stops the run with an error naming `path` and `key`. atomic_path has then left the
    earlier files there as they were, so the error says so."""
    try:
        yield
    except OSError as error:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = f"free space on that disk, or set {key} to a path on another disk" if full else \
            f"set {key} to a path you can write"
        raise UserError(f"writing {path} failed ({error.strerror or error}); what was there before is left as it "
                        f"was: {fix}") from None


# Lock files this process holds. A forked child (a DataLoader worker) shares their open file, and with it the
# lock, for as long as it lives: it closes its copies at once, so that the lock ends with the run that took it.
_HELD_LOCKS: set = set()


def _close_inherited_locks() -> None:
    for file in _HELD_LOCKS:
        file.close()
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class FolderLock:
    """Holds `<folder>/.lock` exclusively while the run writes `folder`; a second run is refused."""

    def __init__(self, folder: Path | str, what: str):
        self.path = Path(folder) / ".lock"
        self.what = what  # for the error: what the second run should change
        self.file = None

    def __enter__(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "unknown"
            self.file.close()
            raise UserError(f"another run (process {owner}) is writing to {self.path.parent}; wait until it ends, "
                            f"or {self.what}") from None
        self.file.truncate(0)
        self.file.write(str(os.getpid()))
        self.file.flush()
        _HELD_LOCKS.add(self.file)
        return self

    def __exit__(self, *exc_info) -> None:
        _HELD_LOCKS.discard(self.file)
        self.file.close()  # releases the lock
