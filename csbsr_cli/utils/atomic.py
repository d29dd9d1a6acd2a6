"""Atomic file writes: a reader (or an interrupted run) never sees a half-written output.

Data is fsynced before the rename (and the folder after it), so a power cut leaves the old file or the
new one, never an empty one. A killed process can still leave its hidden `.part` file behind:
`remove_stale_parts` clears them when the next run on that folder starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PART_GLOB = ".*.part*"  # the temporary names atomic_path makes: .<stem>.<random>.part<suffix>


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; some file systems (and Windows) cannot open a folder: nothing to do there."""
    with contextlib.suppress(OSError):
        _fsync(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it is fsynced and renamed onto `dest`, on error
    removed.

    The temporary name keeps the destination's suffix so that writers choosing a format by suffix
    (OpenCV, tifffile, PIL) still work.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files, and some writers (safetensors) replace the file: set the usual
        # permissions on what was written.
        tmp_path.chmod(0o666 & ~_UMASK)
        _fsync(tmp_path)
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(dest, text.encode("utf-8"))


def remove_stale_parts(folder: Path) -> list[Path]:
    """Delete the `.part` files a killed run left anywhere under `folder`; call it only while holding the
    folder's lock (utils/folders.py), when no other writer can be mid-write. Returns what was removed."""
    removed = []
    for path in sorted(folder.rglob(PART_GLOB)) if folder.is_dir() else []:
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
