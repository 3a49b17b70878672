"""A function of the C library through ctypes, typed once (None where the library lacks it:
``malloc_trim`` is glibc's own, musl and macOS have none)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def libc_function(
    name: str, argtypes: tuple[type[ctypes._SimpleCData[int]], ...], restype: type[ctypes.c_int]
) -> ctypes._NamedFuncPointer | None:
    """The C library's ``name``, or None; ``ctypes.get_errno()`` tells why a call failed."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        function: ctypes._NamedFuncPointer = getattr(ctypes.CDLL(path, use_errno=True), name)
    except AttributeError:
        return None
    function.argtypes = list(argtypes)
    function.restype = restype
    return function
