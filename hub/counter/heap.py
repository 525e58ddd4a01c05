"""Keep the relay's frame traffic from fragmenting the C heap (glibc only).

The relay handles ~20 JPEG frames a second (30-150 KB each) on several threads (the MQTT
network thread receives them, waitress's workers hand them out). tracemalloc shows no Python
object left behind, yet the hub's RSS kept rising: glibc's malloc serves blocks of this size
from per-thread arenas (its mmap threshold rises past them after the first large free), and
the arenas fragment and are not given back. Serving every block of 64 KB or more by mmap
(returned to the system on free, the threshold fixed so it no longer rises) and capping the
number of arenas keeps the hub's RSS flat; see bench/kiosk_soak.py for the figures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: blocks this large or larger are mmapped, and unmapped when freed
MMAP_THRESHOLD = 64 * 1024
ARENA_MAX = 2

_done = False


def limit_heap_growth() -> bool:
    """Set glibc's malloc for large, short-lived buffers (once per process); False elsewhere."""
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to set
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    if not ok:
        log.warning("mallopt refused: the hub's memory may creep up during long calls")
    _done = ok
    return ok
