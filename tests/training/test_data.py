"""Training's layer over the reader: Examples with their sources and digest, errors that name
the file and line, and the seeded, stratified split and sample (the formats themselves are
tested with the reader, in test_contracts_reviewfiles)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from contracts.reviewfiles import LabelRule, MalformedRow
from training.data import DataError, load, sample, split_validation

HEADER = "text,label,stars,source\n"
GOOD = (
    '"Loved it.\nWould come back!",1,5,a\n'  # a text over two lines: the next row starts on line 4
    "Cold food and rude staff,0,1,a\n"
    "Short and sweet,1,,b\n"
)


def write(path: Path, content: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
            f.write(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def test_examples_hold_the_texts_labels_and_their_source_file(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv.gz", HEADER + GOOD)
    examples, report = load(path, name="train")
    assert examples.name == "train"
    assert examples.texts[0] == "Loved it.\nWould come back!"
    assert examples.labels.dtype == np.int64
    assert examples.labels.tolist() == [1, 0, 1]
    assert (report.rows, report.kept, report.malformed) == (3, 3, 0)
    assert examples.sources[0].path.endswith("r.csv.gz")
    assert examples.sources[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_reader_options_and_errors_reach_training(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", HEADER + GOOD + "Fine food,yes,5,a\n" + "Meh,1,3,a\n")
    with pytest.raises(MalformedRow, match="line 6: label must be 0 or 1") as caught:
        load(path, name="t")
    assert isinstance(caught.value, DataError)  # check-data reports every DataError
    assert str(path) in str(caught.value)
    examples, report = load(path, name="t", skip_malformed=True, rule=LabelRule(4, True))
    assert examples.texts == [
        "Loved it.\nWould come back!",
        "Cold food and rude staff",
        "Short and sweet",
    ]
    assert (report.malformed, report.dropped_three_star) == (1, 1)
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing.csv", name="t")
    with pytest.raises(DataError, match="lacks \\['label'\\]"):
        load(write(tmp_path / "h.csv", "text,stars\nGood,5\n"), name="t", fmt="reviewstream")


def test_split_and_sample_are_seeded_and_stratified(tmp_path: Path) -> None:
    rows = "".join(f"review number {i},{int(i % 10 < 7)},,a\n" for i in range(200))
    examples, _ = load(write(tmp_path / "many.csv", HEADER + rows), name="train")
    train, validation = split_validation(examples, 0.2, seed=3)
    again, _ = split_validation(examples, 0.2, seed=3)
    other, _ = split_validation(examples, 0.2, seed=4)
    assert (len(train), len(validation)) == (160, 40)
    assert train.texts == again.texts
    assert train.texts != other.texts
    assert not set(train.texts) & set(validation.texts)
    assert validation.positive_rate() == pytest.approx(0.7)
    assert validation.name == "validation"
    assert train.digest() == again.digest() != other.digest()
    subset = sample(examples, 50, seed=1)
    assert len(subset) == 50
    assert subset.positive_rate() == pytest.approx(0.7, abs=0.02)
    assert sample(examples, None, seed=1) is examples
    assert np.array_equal(sample(examples, 50, seed=1).labels, subset.labels)
