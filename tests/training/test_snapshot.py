"""Building a data snapshot: canonical bytes, de-duplication, allowed sources, no test text."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts import Label
from contracts.reviewfiles import Row, read_dataset
from training.data import load
from training.snapshot import LiveLabel, build, carried_labels, content_digest, normalize

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def rows(*items: tuple[str, Label]) -> list[Row]:
    return [Row(i, f"line {i}", text, label) for i, (text, label) in enumerate(items, 1)]


def live(text: str, label: int, source: str = "rest", minutes: int = 0) -> LiveLabel:
    return LiveLabel(text, label, source, T0 + timedelta(minutes=minutes))


def test_bytes_are_canonical_whatever_the_order() -> None:
    files = [("train.csv", rows(("Great food", 1), ("Awful, cold", 0)))]
    feedback = [live("Lovely staff", 1, minutes=1), live("Slow service", 0, minutes=2)]
    one = build(files, feedback, test_texts=[], allowed_sources=["rest"])
    other = build(
        [("train.csv", list(reversed(files[0][1])))],
        list(reversed(feedback)),
        test_texts=[],
        allowed_sources=["rest"],
    )
    assert one.csv == other.csv
    assert one.gzipped() == other.gzipped()  # no name, mtime 0: the same bytes every time
    assert content_digest(one.gzipped()) == one.digest
    lines = one.csv.decode().splitlines()
    assert lines[0] == "text,label,stars,source"
    assert lines[1:] == [
        '"Awful, cold",0,,file:train.csv',
        "Great food,1,,file:train.csv",
        "Lovely staff,1,,feedback:rest",
        "Slow service,0,,feedback:rest",
    ]


def test_duplicates_files_win_then_the_latest_label() -> None:
    files = [("train.csv", rows(("Great  FOOD", 1)))]
    feedback = [
        live("great food", 0, minutes=5),  # a user disagrees with the curated file: file wins
        live("Nice view", 0, minutes=1),
        live("nice   view", 1, minutes=9),  # a later correction wins
    ]
    snapshot = build(files, feedback, test_texts=[], allowed_sources=["rest"])
    body = snapshot.csv.decode().splitlines()[1:]
    assert body == ["Great  FOOD,1,,file:train.csv", "nice   view,1,,feedback:rest"]
    assert snapshot.counts.duplicates == 2
    assert (snapshot.counts.from_files, snapshot.counts.from_feedback) == (1, 1)


def test_test_texts_never_get_in_and_refused_sources_are_counted() -> None:
    files = [("train.csv", rows(("A test review", 1), ("kept", 0)))]
    feedback = [
        live("a TEST review", 0),
        live("poison", 1, source="replay"),
        live("poison 2", 1, source="replay"),
        live("fine", 1, source="ws"),
    ]
    snapshot = build(files, feedback, test_texts=["A test review"], allowed_sources=["rest", "ws"])
    assert [line.split(",")[0] for line in snapshot.csv.decode().splitlines()[1:]] == [
        "fine",
        "kept",
    ]
    assert snapshot.counts.in_test == 2
    assert snapshot.counts.sources_refused == {"replay": 2}
    assert snapshot.counts.as_dict()["sources_refused"] == {"replay": 2}


def test_training_reads_a_snapshot_like_any_data_file(tmp_path: Path) -> None:
    """Texts with commas, quotes and newlines come back as they went in."""
    odd = 'He said "wow",\nthen left'
    snapshot = build([("f", rows((odd, 1), ("plain", 0)))], [], test_texts=[], allowed_sources=[])
    path = snapshot.write(tmp_path)
    assert path.name == f"{snapshot.digest}.csv.gz"
    assert gzip.decompress(path.read_bytes()) == snapshot.csv
    examples, report = load(path, name="train")
    assert report.format == "reviewstream"
    assert sorted(zip(examples.texts, examples.labels.tolist(), strict=True)) == [
        (odd, 1),
        ("plain", 0),
    ]
    read, _ = read_dataset(path)
    assert [r.stars for r in read] == [None, None]


def test_normalize() -> None:
    assert normalize("  Great\tFOOD \n") == "great food"
    assert normalize(" \n") == ""


def test_live_reviews_carry_forward_and_newer_labels_replace_them(tmp_path: Path) -> None:
    files = [("train.csv", rows(("Great food", 1)))]
    feedback = [live("Lovely staff", 1), live("Slow service", 0, source="ws")]
    first = build(files, feedback, test_texts=[], allowed_sources=["rest", "ws"])
    carried = carried_labels(first.write(tmp_path))
    assert sorted((c.text, c.label, c.source) for c in carried) == [
        ("Lovely staff", 1, "rest"),
        ("Slow service", 0, "ws"),
    ]
    # The texts left the topic: the next snapshot still holds them, to the byte.
    again = build(files, carried, test_texts=[], allowed_sources=["rest", "ws"])
    assert again.csv == first.csv
    # A label given since (any date is newer) replaces the carried one.
    corrected = build(
        files, [*carried, live("slow service", 1)], test_texts=[], allowed_sources=["rest", "ws"]
    )
    assert "slow service,1,,feedback:rest" in corrected.csv.decode()
    assert "Slow service" not in corrected.csv.decode()
