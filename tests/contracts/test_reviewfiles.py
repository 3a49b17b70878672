"""The one reader of review files: inputs (CSV, JSONL, plain text) and datasets (reviewstream
CSV, Yelp Review Polarity), gzip, bad rows by line, labels, the star rule, the shared data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from contracts.reviewfiles import (
    BadRow,
    InputFormat,
    LabelRule,
    MalformedRow,
    ReviewFile,
    ReviewFileError,
    Row,
    detect_dataset_format,
    detect_format,
    parse_label,
    read_dataset,
    shared_data,
)

SHARED_TEST = shared_data("yelp/test.csv.gz")


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def bad(items: list[Row | BadRow]) -> list[str]:
    return [str(item) for item in items if isinstance(item, BadRow)]


def good(items: list[Row | BadRow]) -> list[Row]:
    return [item for item in items if isinstance(item, Row)]


# --- inputs: ReviewFile -------------------------------------------------------------------------


def test_csv_rows_keep_numbers_lines_and_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.csv",
        'text,label,stars,source\n"Great, truly",1,5,a\n"two\nline review",0,,b\nplain,1,4,c\n',
    )
    rows = good(list(ReviewFile(path).records()))
    assert [(r.number, r.line, r.text, r.label) for r in rows] == [
        (1, 2, "Great, truly", 1),
        (2, 3, "two\nline review", 0),
        (3, 5, "plain", 1),  # the quoted newline moved it down a line
    ]


def test_csv_bad_rows_are_reported_by_line_and_never_dropped(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.csv",
        "text,label\n"
        "fine,1\n"  # line 2
        '"broken"quote,1\n'  # line 3
        ",0\n"  # line 4: missing text
        "   ,1\n"  # line 5: blank text
        "ok,maybe\n"  # line 6: unknown label
        "too,1,many\n"  # line 7
        "\n"  # line 8
        "last,0\n",  # line 9
    )
    items = list(ReviewFile(path, require_label=True).records())
    assert len(items) == 8  # every record is accounted for
    assert [item.number for item in items] == list(range(1, 9))
    assert bad(items) == [
        "line 3: broken quoting: ',' expected after '\"'",
        "line 4: missing text",
        "line 5: missing text",
        "line 6: unknown label 'maybe'",
        "line 7: expected 2 fields, got 3",
        "line 8: blank line",
    ]
    assert [r.text for r in good(items)] == ["fine", "last"]


def test_missing_label_is_bad_only_when_required(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "text,label\nno label here,\nlabelled,positive\n")
    assert bad(list(ReviewFile(path, require_label=True).records())) == ["line 2: missing label"]
    rows = good(list(ReviewFile(path).records()))
    assert [r.label for r in rows] == [None, 1]


def test_unterminated_quote_is_one_bad_row_spanning_to_the_end(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", 'text,label\nok,1\n"never closed,1\nmore,0\n')
    items = list(ReviewFile(path).records())
    assert [r.text for r in good(items)] == ["ok"]
    assert len(bad(items)) == 1
    assert bad(items)[0].startswith("lines 3-4: broken quoting")


def test_csv_header_problems_stop_before_any_row(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "review,label\nhello,1\n")
    with pytest.raises(ReviewFileError, match="no column 'text'"):
        list(ReviewFile(path).records())
    assert [r.text for r in ReviewFile(path, text_column="review").rows()] == ["hello"]
    with pytest.raises(ReviewFileError, match="no column 'y'"):
        list(ReviewFile(path, text_column="review", require_label=True, label_column="y").rows())


def test_not_utf8_is_a_bad_row_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", b"\xef\xbb\xbftext,label\nfine,1\ncaf\xe9,0\nok,1\n")
    items = list(ReviewFile(path).records())
    assert bad(items) == ["line 3: not valid UTF-8 (line 3)"]
    assert [r.text for r in good(items)] == ["fine", "ok"]  # the BOM did not hide the header


def test_gzip_is_read_by_its_magic_whatever_the_name(tmp_path: Path) -> None:
    content = "text,label\nzipped review,1\n"
    named = write(tmp_path / "r.csv.gz", content)
    assert [r.text for r in ReviewFile(named).rows()] == ["zipped review"]
    unnamed = tmp_path / "r.csv"
    unnamed.write_bytes(gzip.compress(content.encode()))
    assert [r.text for r in ReviewFile(unnamed).rows()] == ["zipped review"]


def test_damaged_gzip_cannot_be_read(tmp_path: Path) -> None:
    data = gzip.compress(("text,label\n" + "a review,1\n" * 5000).encode())
    path = tmp_path / "r.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReviewFileError, match="cannot be read, damaged after line"):
        list(ReviewFile(path).records())
    (tmp_path / "plain.csv.gz").write_bytes(b"text,label\nnot gzip,1\n")
    with pytest.raises(ReviewFileError, match="damaged after line 0"):
        list(ReviewFile(tmp_path / "plain.csv.gz").records())


def test_jsonl_rows_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"text": "great", "label": 1}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"label": 0}),
        json.dumps({"text": 5, "label": 0}),
        "",
        json.dumps({"text": "meh", "label": "3"}),
        json.dumps({"text": "bad", "label": 0.0, "extra": True}),
    ]
    path = write(tmp_path / "r.jsonl", "\n".join(lines) + "\n")
    items = list(ReviewFile(path, require_label=True).records())
    assert [(r.line, r.text, r.label) for r in good(items)] == [(1, "great", 1), (8, "bad", 0)]
    assert bad(items) == [
        "line 2: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        "line 3: expected a JSON object, got list",
        "line 4: missing text",
        "line 5: 'text' is not a string",
        "line 6: blank line",
        "line 7: unknown label '3'",
    ]


def test_plain_text_one_review_per_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.txt", "first review\r\nsecond one\n\n  \nthird\n")
    items = list(ReviewFile(path).records())
    assert [(r.line, r.text, r.label) for r in good(items)] == [
        (1, "first review", None),
        (2, "second one", None),
        (5, "third", None),
    ]
    assert bad(items) == ["line 3: missing text", "line 4: missing text"]
    with pytest.raises(ReviewFileError, match="plain text has no labels"):
        list(ReviewFile(path, require_label=True).records())


def test_missing_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ReviewFileError, match=r"cannot read .*missing\.csv: No such file"):
        list(ReviewFile(tmp_path / "missing.csv").records())


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "a.CSV.gz", "text\nx\n")) is InputFormat.CSV
    assert detect_format(write(tmp_path / "a.ndjson", "{}\n")) is InputFormat.JSONL
    assert detect_format(write(tmp_path / "a.txt", "{looks like json\n")) is InputFormat.TEXT
    assert detect_format(write(tmp_path / "noname", '\n {"text": "x"}\n')) is InputFormat.JSONL
    assert detect_format(write(tmp_path / "other", "just words\n")) is InputFormat.TEXT


def test_labels() -> None:
    assert [parse_label(v) for v in (0, 1, "1", " 0 ", "1.0", 0.0, "Positive", "neg")] == [
        0,
        1,
        1,
        0,
        1,
        0,
        1,
        0,
    ]
    assert parse_label("") is None
    assert parse_label(None) is None
    for value in (2, "2", True, "yes", 0.5, [1]):
        with pytest.raises(ValueError, match="unknown label"):
            parse_label(value)


# --- datasets: read_dataset ---------------------------------------------------------------------

HEADER = "text,label,stars,source\n"
GOOD = (
    '"Loved it.\nWould come back!",1,5,a\n'  # a text over two lines: the next row starts on line 4
    "Cold food and rude staff,0,1,a\n"
    "Short and sweet,1,,b\n"
)


def test_reads_the_reviewstream_format_gzip_and_multiline(tmp_path: Path) -> None:
    rows, report = read_dataset(write(tmp_path / "r.csv.gz", HEADER + GOOD))
    assert rows[0].text == "Loved it.\nWould come back!"
    assert [(r.line, r.label, r.stars) for r in rows] == [(2, 1, 5.0), (4, 0, 1.0), (5, 1, None)]
    assert (report.rows, report.kept, report.malformed) == (3, 3, 0)
    assert report.format == "reviewstream"


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
        read_dataset(path)
    assert caught.value.line == 6
    assert str(path) in str(caught.value)


def test_malformed_rows_can_be_skipped_and_counted(tmp_path: Path) -> None:
    content = HEADER + GOOD + "x,2,5,a\n" + "Good pizza,1,4,a\n" + '"never closed,1,5,a\n'
    rows, report = read_dataset(write(tmp_path / "bad.csv", content), skip_malformed=True)
    assert rows[-1].text == "Good pizza"
    assert (report.rows, report.kept, report.malformed) == (6, 4, 2)
    assert report.malformed_examples[0] == "line 6: label must be 0 or 1, found '2'"
    assert "line 8: not valid CSV" in report.malformed_examples[1]
    assert "2 malformed skipped" in report.summary()


def test_unusable_datasets_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReviewFileError, match="no such file"):
        read_dataset(tmp_path / "missing.csv")
    with pytest.raises(ReviewFileError, match="lacks \\['label'\\]"):
        read_dataset(write(tmp_path / "h.csv", "text,stars\nGood,5\n"), fmt="reviewstream")
    with pytest.raises(ReviewFileError, match="no usable rows"):
        read_dataset(write(tmp_path / "e.csv", HEADER))
    with pytest.raises(ReviewFileError, match="no header line"):
        read_dataset(write(tmp_path / "empty.csv", ""), fmt="reviewstream")
    # Not UTF-8 is a file of another kind, even when bad rows are skipped.
    latin1 = write(
        tmp_path / "latin1.csv", HEADER.encode() + "Caf\xe9 ok,1,5,a\n".encode("latin-1")
    )
    for skip in (False, True):
        with pytest.raises(ReviewFileError, match="not UTF-8 text \\(line 2\\)"):
            read_dataset(latin1, skip_malformed=skip)
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ReviewFileError, match="cannot be read"):
        read_dataset(tmp_path / "broken.csv.gz", fmt="reviewstream")


def test_the_label_rule_threshold_and_three_star_option(tmp_path: Path) -> None:
    rows = "".join(f"review {s},{int(s >= 3)},{s},a\n" for s in (1, 2, 3, 4, 5)) + "no stars,0,,b\n"
    path = write(tmp_path / "stars.csv", HEADER + rows)
    by_default, _ = read_dataset(path)
    assert [r.label for r in by_default] == [0, 0, 1, 1, 1, 0]
    stricter, report = read_dataset(path, rule=LabelRule(positive_min_stars=4))
    assert [r.label for r in stricter] == [0, 0, 0, 1, 1, 0]
    assert report.relabelled == 1
    dropped, report = read_dataset(path, rule=LabelRule(drop_three_star=True))
    assert [r.text for r in dropped] == ["review 1", "review 2", "review 4", "review 5", "no stars"]
    assert report.dropped_three_star == 1


def test_reads_the_yelp_polarity_format(tmp_path: Path) -> None:
    content = (
        '"2","Great tacos.\\nFriendly staff and ""cheap"" beer."\n'
        '"1","Never again."\n'
        '"3","Unknown class"\n'
        '"1"\n'
    )
    path = write(tmp_path / "train.csv", content)
    assert detect_dataset_format(path) == "yelp_polarity"
    with pytest.raises(MalformedRow, match="line 3: class must be 1 or 2"):
        read_dataset(path)
    rows, report = read_dataset(path, skip_malformed=True)
    assert [r.text for r in rows] == [
        'Great tacos.\nFriendly staff and "cheap" beer.',
        "Never again.",
    ]
    assert [r.label for r in rows] == [1, 0]
    assert report.malformed_examples[1] == "line 4: expected 2 fields, found 1"


# --- one format, one reading; the shared data ---------------------------------------------------


def test_a_reviewstream_file_reads_the_same_as_an_input_and_as_a_dataset(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv.gz", HEADER + GOOD)
    as_input = [(r.number, r.line, r.text, r.label) for r in ReviewFile(path).rows()]
    as_dataset, _ = read_dataset(path)
    assert as_input == [(r.number, r.line, r.text, r.label) for r in as_dataset]


def test_shared_data_is_found_beside_the_checkout_or_named_there() -> None:
    found = shared_data("yelp/test.csv.gz")
    assert found.parts[-4:] == ("shared", "data", "yelp", "test.csv.gz")
    beside_the_checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
    assert shared_data("no/such/file.csv") == beside_the_checkout / "no/such/file.csv"


def test_the_shared_labelled_format_reads_clean() -> None:
    if not SHARED_TEST.exists():
        pytest.skip("the shared data is not on this machine")
    items = list(ReviewFile(SHARED_TEST, require_label=True).records())
    assert bad(items) == []
    labels = [row.label for row in good(items)]
    assert len(labels) == 3572
    assert labels.count(1) == 2499
    rows, report = read_dataset(SHARED_TEST)
    assert [r.label for r in rows] == labels
    assert (report.kept, report.malformed, report.relabelled) == (3572, 0, 0)
