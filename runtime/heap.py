"""Handing freed heap memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

Building an ONNX Runtime session allocates a few MiB it frees once built (graph
optimisation), and a session released at a hot reload frees its own; glibc keeps such freed
memory in its heaps, so every reload would leave ~2 MiB more resident. A worker calls
:func:`trim` after each, off its event loop (it walks every heap).
"""

from __future__ import annotations

import ctypes

from runtime.libc import libc_function


def trim() -> None:
    """Give freed heap memory back to the system (blocking, a few ms)."""
    malloc_trim = libc_function("malloc_trim", (ctypes.c_size_t,), ctypes.c_int)
    if malloc_trim is not None:
        malloc_trim(0)
