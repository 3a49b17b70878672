"""Handing freed heap memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

Building an ONNX Runtime session allocates a few MiB it frees once built (graph
optimisation), and a session released at a hot reload frees its own; glibc keeps such freed
memory in its heaps, so every reload would leave ~2 MiB more resident. A worker calls
:func:`trim` after each, off its event loop (it walks every heap).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except AttributeError:  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim() -> None:
    """Give freed heap memory back to the system (blocking, a few ms)."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)
