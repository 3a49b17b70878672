"""This process's resident pages of a mapped file, and dropping them (Linux; elsewhere nothing).

ONNX Runtime maps a bundle's weights file (``model.onnx.data``) privately, readable and
writable; a session reads it and never writes it. A hot reload checks the new version while the
old one's session still holds its weights' pages: :func:`drop_pages` takes those out of this
process (``madvise(MADV_DONTNEED)``) first, so two versions' weights are never resident at once.

Dropped only where that is clearly safe: a mapping of that very file (device and inode, or its
name) none of whose pages was ever written. Each page's entry in ``/proc/self/pagemap`` says so:
a written page of a private mapping is an anonymous copy (not "file-page"), which MADV_DONTNEED
would lose. Every dropped page is then the file's own and faults back from it (from the page
cache, a few ms for 32 MiB) when the old session reads it again, as it does if the new version
is refused. The caller makes sure nothing uses the mapping while this runs, and that the file is
unchanged since verified. (``/proc/self/smaps`` says the same per mapping, but costs 40-60 ms in
a worker: the kernel walks every mapping's pages; ``maps`` and the file's own pagemap entries
cost well under a millisecond.)
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.libc import libc_function

log = logging.getLogger(__name__)

MAPS = Path("/proc/self/maps")
PAGEMAP = Path("/proc/self/pagemap")
MADV_DONTNEED = 4  # Linux's value on every architecture
MADVISE_ARGS = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
PAGE = mmap.PAGESIZE
# Bits of a pagemap entry (Documentation/admin-guide/mm/pagemap.rst)
PRESENT, SWAPPED, FILE_PAGE = 1 << 63, 1 << 62, 1 << 61


@dataclass(frozen=True)
class Mapping:
    """One mapping of a file in this process, and what its pagemap says of its pages."""

    start: int
    end: int
    perms: str
    resident_kib: int
    written_kib: int  # anonymous copies of written pages (or swapped): never dropped
    unreadable: str | None = None  # why its pagemap could not be read: nothing is known


def mappings(path: Path) -> list[Mapping]:
    """This process's mappings of the file at ``path`` (none where there is no procfs)."""
    try:
        st = path.stat()
        lines = MAPS.read_text().splitlines()
    except OSError:
        return []
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    name = str(path.resolve())
    found = []
    for line in lines:
        head = line.split(maxsplit=5)
        if len(head) < 6:
            continue  # anonymous
        # By name too: on overlayfs (containers) the maps show the lower file's device.
        if (head[3] == device and int(head[4]) == st.st_ino) or head[5].strip() == name:
            start, end = (int(x, 16) for x in head[0].split("-"))
            found.append(_pages(start, end, head[1]))
    return found


def _pages(start: int, end: int, perms: str) -> Mapping:
    try:
        with PAGEMAP.open("rb") as pagemap:
            pagemap.seek(start // PAGE * 8)
            entries = np.frombuffer(pagemap.read((end - start) // PAGE * 8), dtype=np.uint64)
    except OSError as exc:  # no pagemap (a locked-down container): nothing known, nothing dropped
        return Mapping(start, end, perms, 0, 0, unreadable=f"{PAGEMAP}: {exc.strerror or exc}")
    present = (entries & np.uint64(PRESENT)) != 0
    file = (entries & np.uint64(FILE_PAGE)) != 0
    swapped = (entries & np.uint64(SWAPPED)) != 0
    written = int(np.count_nonzero((present & ~file) | swapped))
    kib = PAGE // 1024
    return Mapping(start, end, perms, int(np.count_nonzero(present)) * kib, written * kib)


def drop_pages(path: Path) -> int:
    """Drop this process's resident pages of ``path``'s mappings where none was ever written;
    return how many bytes were resident there (0 where nothing applies)."""
    dropped = 0
    for mapping in mappings(path):
        if mapping.unreadable:
            log.warning("not dropping %s: its pages cannot be read (%s)", path, mapping.unreadable)
            continue
        if mapping.written_kib:
            log.warning("not dropping %s: %d KiB of it written", path, mapping.written_kib)
            continue
        if not mapping.resident_kib:
            continue
        if _madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) != 0:
            log.warning("madvise of %s failed: %s", path, os.strerror(ctypes.get_errno()))
            continue
        dropped += mapping.resident_kib * 1024
    return dropped


def _madvise(start: int, length: int, advice: int) -> int:
    madvise = libc_function("madvise", MADVISE_ARGS, ctypes.c_int)
    if madvise is None:  # no C library found: nothing is dropped, and the log says why
        ctypes.set_errno(errno.ENOSYS)
        return -1
    return int(madvise(start, length, advice))
