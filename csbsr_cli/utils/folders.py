"""Folder safety shared by every command: user-supplied relative paths stay inside their folder, output
folders are checked for writing up front, and one run at a time holds an output folder."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath

from ..errors import InputError
from .atomic import remove_stale_parts

try:
    import fcntl
except ModuleNotFoundError:  # Windows: runs on one folder are not serialised
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".csbsr.lock"


def contained(root: Path, rel: str | os.PathLike[str], what: str = "path") -> Path:
    """`root / rel` for a path read from a manifest, a card or a --name; refuses one that is absolute or
    climbs out with '..' (so nothing is read or written outside `root`)."""
    text = os.fspath(rel)
    parts = PurePath(text).parts
    if not text or PurePath(text).is_absolute() or PurePath(text).anchor or ".." in parts or "\\" in text:
        raise InputError(f"{what} {text!r} must stay inside its folder (a relative path without '..')")
    return root / text


def ensure_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written there: an unusable output folder is one line (exit 2)
    before any work, not a traceback after it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"output folder is not writable ({exc.strerror or exc})", folder) from None


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"PID {int(path.read_text(encoding='ascii').strip())}"
    return "another process"


@contextlib.contextmanager
def folder_lock(folder: Path, lock_name: str = LOCK_NAME) -> Iterator[None]:
    """Hold `folder` for one run (an flock on `folder/<lock_name>` holding our PID); a second run on the same
    folder is refused, naming the process that holds it. The OS drops the lock if the run is killed.
    A training run locks `.<name>.lock` beside its run folder, which --overwrite deletes and recreates.
    The lock file is removed when the run ends."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock_name
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not path.exists() or not os.path.samestat(os.stat(path), os.fstat(fd)):
                raise BlockingIOError(errno.EAGAIN, "removed by the run that held it")  # lost a race
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise InputError(
                f"output folder is in use by another csbsr run ({_holder(path)}): wait for it to finish or "
                "choose another folder",
                folder,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
        path.unlink()  # still holding it: a run that opened the old file sees it gone and refuses
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_folder(folder: Path) -> Iterator[list[Path]]:
    """Hold `folder` for one run and remove the `.part` files a killed run left there (safe only while
    holding it); yields the removed paths."""
    with folder_lock(folder):
        yield remove_stale_parts(folder)
