"""Process-wide allocator tuning for tensor workloads on Linux (glibc).

glibc serves blocks above a threshold with fresh ``mmap`` pages and unmaps them on free, so every tile
batch page-faults its activations in again: on a 2-core CPU, `csbsr segment` spent as much time in the
kernel (sys 55 s) as in the model (user 58 s) for one 1280x720 frame. Serving everything from the heap and
keeping freed memory for reuse removes that (sys 1 s, 2.4x faster overall) for about 40 % more peak RSS,
still bounded by the largest tile batch rather than by the frame.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_FREED_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc's malloc not to use mmap and to keep up to 1 GiB of freed memory; False if not glibc.

    ``CSBSR_SYSTEM_MALLOC=1`` leaves the allocator alone (for memory-tight hosts).
    """
    if os.environ.get("CSBSR_SYSTEM_MALLOC") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
