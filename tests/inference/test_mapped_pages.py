"""A session's mapped weights can leave this process's memory and come back, same answers."""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import numpy as np
import pytest

from inference import OnnxPredictor, mapped_pages
from inference.bundle import WEIGHTS_FILE
from inference.mapped_pages import PAGEMAP, drop_pages, mappings
from inference.synthetic import make_fast_bundle
from tests.serving import REVIEWS

pytestmark = pytest.mark.skipif(not PAGEMAP.exists(), reason="Linux's /proc/self/pagemap")


def resident_kib(path: Path) -> int:
    return sum(m.resident_kib for m in mappings(path))


def test_dropped_weights_pages_leave_memory_and_fault_back_with_the_same_answers(
    tmp_path: Path,
) -> None:
    bundle = make_fast_bundle(tmp_path / "bundle", seed=3, buckets=2**16)  # 256 KiB of weights
    weights = bundle.path / WEIGHTS_FILE
    predictor = OnnxPredictor(bundle)
    texts = REVIEWS * 4
    before = predictor.predict(texts)
    (mapped,) = mappings(weights)
    assert mapped.resident_kib > 0
    assert mapped.written_kib == 0  # never written: its pages are the file's

    assert drop_pages(weights) == mapped.resident_kib * 1024
    assert resident_kib(weights) == 0
    assert drop_pages(weights) == 0  # nothing left to drop

    assert np.array_equal(predictor.predict(texts), before)  # read back from the file
    assert resident_kib(weights) > 0
    assert predictor.check_reference() == 0.0


def test_a_file_not_mapped_has_nothing_to_drop(tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"\0" * 4096)
    assert mappings(other) == []
    assert drop_pages(other) == 0
    assert drop_pages(tmp_path / "missing") == 0


def test_a_mapping_with_a_written_page_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    with data.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as private:
        assert private[5000] == 5000 % 256  # read: the file's page
        private[0] = 255  # written: an anonymous copy, which dropping would lose
        (mapped,) = mappings(data)
        assert mapped.written_kib > 0
        assert drop_pages(data) == 0
        assert private[0] == 255
        assert mappings(data)[0].resident_kib == mapped.resident_kib


def test_without_a_readable_pagemap_nothing_is_dropped_and_the_log_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 64)
    with data.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert mapped[5000] == 5000 % 256
        resident = resident_kib(data)
        monkeypatch.setattr(mapped_pages, "PAGEMAP", tmp_path / "no-pagemap")
        (unknown,) = mappings(data)
        assert unknown.unreadable is not None
        assert "no-pagemap" in unknown.unreadable
        with caplog.at_level(logging.WARNING, logger=mapped_pages.__name__):
            assert drop_pages(data) == 0
        assert "its pages cannot be read" in caplog.text
        monkeypatch.undo()
        assert resident_kib(data) == resident  # left where they were
