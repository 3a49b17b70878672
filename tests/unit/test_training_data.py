"""Loaders of the reviewstream and Yelp Review Polarity CSV formats, against good and bad rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from training.data import (
    DataError,
    LabelRule,
    MalformedRow,
    detect_format,
    load,
    sample,
    split_validation,
)

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


def test_reads_the_reviewstream_format_gzip_and_multiline(tmp_path: Path) -> None:
    examples, report = load(write(tmp_path / "r.csv.gz", HEADER + GOOD), name="train")
    assert examples.texts[0] == "Loved it.\nWould come back!"
    assert examples.labels.tolist() == [1, 0, 1]
    assert (report.rows, report.kept, report.malformed) == (3, 3, 0)
    assert report.format == "reviewstream"
    assert examples.sources[0].path.endswith("r.csv.gz")
    assert len(examples.sources[0].sha256) == 64


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("only a text,1\n", "expected 4 fields, found 2"),
        ("too,many,fields,here,now\n", "expected 4 fields, found 5"),
        ("Fine food,yes,5,a\n", "label must be 0 or 1, found 'yes'"),
        ("Fine food,1,7,a\n", "stars must be a number from 1 to 5, found '7'"),
        ("Fine food,1,five,a\n", "stars must be a number from 1 to 5, found 'five'"),
        ('"   ",1,5,a\n', "empty text"),
        ('"Fine" food,1,5,a\n', "not valid CSV"),
    ],
)
def test_a_malformed_row_is_an_error_naming_its_line(tmp_path: Path, row: str, reason: str) -> None:
    path = write(tmp_path / "bad.csv", HEADER + GOOD + row + "Good pizza,1,4,a\n")
    with pytest.raises(MalformedRow, match=f"line 6: {reason}") as caught:
        load(path, name="train")
    assert caught.value.line == 6
    assert str(path) in str(caught.value)


def test_malformed_rows_can_be_skipped_and_counted(tmp_path: Path) -> None:
    content = HEADER + GOOD + "x,2,5,a\n" + "Good pizza,1,4,a\n" + '"never closed,1,5,a\n'
    examples, report = load(write(tmp_path / "bad.csv", content), name="t", skip_malformed=True)
    assert examples.texts[-1] == "Good pizza"
    assert (report.rows, report.kept, report.malformed) == (6, 4, 2)
    assert report.malformed_examples[0] == "line 6: label must be 0 or 1, found '2'"
    assert "line 8: not valid CSV" in report.malformed_examples[1]
    assert "2 malformed skipped" in report.summary()


def test_unusable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing.csv", name="t")
    with pytest.raises(DataError, match="lacks \\['label'\\]"):
        load(write(tmp_path / "h.csv", "text,stars\nGood,5\n"), name="t", fmt="reviewstream")
    with pytest.raises(DataError, match="no usable rows"):
        load(write(tmp_path / "e.csv", HEADER), name="t")
    (tmp_path / "latin1.csv").write_bytes(HEADER.encode() + "Caf\xe9 ok,1,5,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load(tmp_path / "latin1.csv", name="t")
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot be read"):
        load(tmp_path / "broken.csv.gz", name="t", fmt="reviewstream")


def test_the_label_rule_threshold_and_three_star_option(tmp_path: Path) -> None:
    rows = "".join(f"review {s},{int(s >= 3)},{s},a\n" for s in (1, 2, 3, 4, 5)) + "no stars,0,,b\n"
    path = write(tmp_path / "stars.csv", HEADER + rows)
    by_default, _ = load(path, name="t")
    assert by_default.labels.tolist() == [0, 0, 1, 1, 1, 0]
    stricter, report = load(path, name="t", rule=LabelRule(positive_min_stars=4))
    assert stricter.labels.tolist() == [0, 0, 0, 1, 1, 0]
    assert report.relabelled == 1
    dropped, report = load(path, name="t", rule=LabelRule(drop_three_star=True))
    assert dropped.texts == ["review 1", "review 2", "review 4", "review 5", "no stars"]
    assert report.dropped_three_star == 1


def test_reads_the_yelp_polarity_format(tmp_path: Path) -> None:
    content = (
        '"2","Great tacos.\\nFriendly staff and ""cheap"" beer."\n'
        '"1","Never again."\n'
        '"3","Unknown class"\n'
        '"1"\n'
    )
    path = write(tmp_path / "train.csv", content)
    assert detect_format(path) == "yelp_polarity"
    with pytest.raises(MalformedRow, match="line 3: class must be 1 or 2"):
        load(path, name="t")
    examples, report = load(path, name="t", skip_malformed=True)
    assert examples.texts == ['Great tacos.\nFriendly staff and "cheap" beer.', "Never again."]
    assert examples.labels.tolist() == [1, 0]
    assert report.malformed_examples[1] == "line 4: expected 2 fields, found 1"


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
