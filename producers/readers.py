"""The producers' policy over review files (read by :mod:`contracts.reviewfiles`).

A first pass counts the rows and collects the bad ones; each bad row is reported with its line,
and with ``--on-bad-row fail`` the run stops before anything is sent. A file that cannot be
read as asked is an :class:`~producers.errors.InputError` (exit code 1), raised by any pass.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from contracts.reviewfiles import BadRow, ReviewFile, ReviewFileError, Row, file_digest
from producers.errors import InputError

log = logging.getLogger(__name__)

LOGGED_BAD_ROWS = 50


class OnBadRow(StrEnum):
    """What a bad row does: reported and skipped (counted), or the run stops before sending."""

    SKIP = "skip"
    FAIL = "fail"


@dataclass
class Scan:
    """What a first pass over a file found: how many rows to send, and the bad rows."""

    rows: int = 0
    bad_count: int = 0
    bad: list[BadRow] = field(default_factory=list)
    keep_bad: int = 1000

    def enforce(self, policy: OnBadRow, source: object) -> None:
        """Log every bad row kept (with its line); with FAIL, stop with an InputError."""
        for bad in self.bad[:LOGGED_BAD_ROWS]:
            log.warning("%s: bad row at %s", source, bad)
        if self.bad_count > LOGGED_BAD_ROWS:
            log.warning("%s: ... and %d more bad rows", source, self.bad_count - LOGGED_BAD_ROWS)
        if self.bad_count and policy is OnBadRow.FAIL:
            first = self.bad[0]
            raise InputError(
                f"{source}: {self.bad_count} bad row(s), the first at {first}; nothing was sent"
                " (--on-bad-row skip sends the good rows)"
            )

    def add(self, item: Row | BadRow) -> None:
        if isinstance(item, Row):
            self.rows += 1
            return
        self.bad_count += 1
        if len(self.bad) < self.keep_bad:
            self.bad.append(item)


def scan(source: ReviewFile, limit: int | None = None) -> Scan:
    """Count the rows and collect the bad ones; stops after ``limit`` good rows."""
    found = Scan()
    with _input_errors():
        for item in source.records():
            if limit is not None and found.rows >= limit:
                break
            found.add(item)
    return found


def rows(source: ReviewFile) -> Iterator[Row]:
    """The good rows (a :func:`scan` has reported the bad ones)."""
    with _input_errors():
        yield from source.rows()


def digest(path: Path) -> str:
    """The input's sha256: the identity of a resumable run."""
    with _input_errors():
        return file_digest(path)


@contextlib.contextmanager
def _input_errors() -> Iterator[None]:
    try:
        yield
    except ReviewFileError as exc:
        raise InputError(str(exc)) from None
