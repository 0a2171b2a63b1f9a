"""The C allocator kept from handing each frame's memory back to the kernel.

Every frame allocates and frees the same few dozen buffers of 0.1 to 10 MB: warp maps, warped
layers, blend weights, encoder input. glibc's malloc serves blocks over its (adaptive) mmap
threshold with fresh ``mmap``s, and trims free memory at the top of each thread's heap back to the
kernel; either way the next frame's buffers arrive as untouched pages, and the kernel faults and
zeroes them one 4 KB page at a time. Measured on the design machine, that was 13% of a 720p
render's CPU time. Raising both thresholds above the largest per-frame buffer lets freed blocks be
reused as they are, at the price of the process keeping that memory mapped (peak RSS +10%).

This is the glibc tuning that ``mallopt(3)`` documents (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``);
on any other C library it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Above a 1080p frame's two-channel float map (9.3 MB); glibc caps this threshold at 32 MB.
_MMAP_THRESHOLD_BYTES = 32 << 20
#: Free memory at the top of a heap kept for the next frames rather than trimmed.
_TRIM_THRESHOLD_BYTES = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Tune this process's glibc malloc for per-frame buffers (see the module); once per process.
    Returns whether it applied (``False`` on other C libraries)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = ctypes.CDLL(name).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success. The mmap threshold fixed also turns off glibc's adaptation of it.
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )
