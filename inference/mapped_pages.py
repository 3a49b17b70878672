"""This process's resident pages of a mapped file, and dropping them (Linux; elsewhere nothing).

ONNX Runtime maps a bundle's weights file (``model.onnx.data``) privately, readable and
writable; a session reads it and never writes it. A hot reload checks the new version while the
old one's session still holds its weights' pages: :func:`drop_pages` takes those out of this
process (``madvise(MADV_DONTNEED)``) first, so two versions' weights are never resident at once.

Dropped only where that is clearly safe: a mapping of that very file (device and inode) none
of whose pages was ever written (``Anonymous: 0 kB`` in ``/proc/self/smaps``: a written page of
a private mapping is an anonymous copy, which MADV_DONTNEED would lose). Every dropped page is
then the file's own and faults back from it (from the page cache, a few ms for 32 MiB) when
the old session reads it again, as it does if the new version is refused. The caller makes
sure nothing uses the mapping while this runs, and that the file is unchanged since verified.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SMAPS = Path("/proc/self/smaps")
MADV_DONTNEED = 4  # Linux's value on every architecture


@dataclass(frozen=True)
class Mapping:
    """One mapping of a file in this process, as ``/proc/self/smaps`` shows it."""

    start: int
    end: int
    perms: str
    resident_kib: int
    anonymous_kib: int  # pages written (copied on write): never dropped


def mappings(path: Path, smaps: Path = SMAPS) -> list[Mapping]:
    """This process's mappings of the file at ``path`` (none where there is no smaps)."""
    try:
        st = path.stat()
        lines = smaps.read_text().splitlines()
    except OSError:
        return []
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    name = str(path.resolve())
    found: list[Mapping] = []
    head: list[str] | None = None
    fields: dict[str, int] = {}

    def close() -> None:
        if head is None or len(head) < 6:
            return
        # By name too: on overlayfs (containers) the maps show the lower file's device.
        if (head[3] == device and int(head[4]) == st.st_ino) or " ".join(head[5:]) == name:
            start, end = (int(x, 16) for x in head[0].split("-"))
            found.append(
                Mapping(start, end, head[1], fields.get("Rss", 0), fields.get("Anonymous", 0))
            )

    for line in lines:
        parts = line.split()
        if parts and not parts[0].endswith(":") and "-" in parts[0]:  # a mapping's first line
            close()
            head, fields = parts, {}
        elif len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    close()
    return found


def drop_pages(path: Path) -> int:
    """Drop this process's resident pages of ``path``'s mappings where none was ever written;
    return how many bytes were resident there (0 where nothing applies)."""
    dropped = 0
    for mapping in mappings(path):
        if mapping.anonymous_kib:
            log.warning("not dropping %s: %d KiB of it written", path, mapping.anonymous_kib)
            continue
        if _madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) != 0:
            log.warning("madvise of %s failed: %s", path, os.strerror(ctypes.get_errno()))
            continue
        dropped += mapping.resident_kib * 1024
    return dropped


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return libc


def _madvise(start: int, length: int, advice: int) -> int:
    return int(_libc().madvise(start, length, advice))
