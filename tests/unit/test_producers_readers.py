"""The producers' readers: CSV, JSONL, plain text, gzip, stdin, and bad rows by line."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from producers.errors import InputError
from producers.readers import (
    BadRow,
    InputFormat,
    OnBadRow,
    ReviewFile,
    Row,
    detect_format,
    parse_label,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED_TEST = Path(__file__).resolve().parents[3] / "shared/data/yelp/test.csv.gz"


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def bad(items: list[Row | BadRow]) -> list[str]:
    return [str(item) for item in items if isinstance(item, BadRow)]


def good(items: list[Row | BadRow]) -> list[Row]:
    return [item for item in items if isinstance(item, Row)]


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
    with pytest.raises(InputError, match="no column 'text'"):
        list(ReviewFile(path).records())
    assert [r.text for r in ReviewFile(path, text_column="review").rows()] == ["hello"]
    with pytest.raises(InputError, match="no column 'y'"):
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


def test_damaged_gzip_is_an_input_error(tmp_path: Path) -> None:
    data = gzip.compress(("text,label\n" + "a review,1\n" * 5000).encode())
    path = tmp_path / "r.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged after line"):
        list(ReviewFile(path).records())


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
    with pytest.raises(InputError, match="plain text has no labels"):
        list(ReviewFile(path, require_label=True).records())


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


def test_scan_counts_and_enforces_the_policy(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "text,label\na,1\n,1\nb,0\nc,9\nd,1\n")
    source = ReviewFile(path, require_label=True)
    scan = source.scan()
    assert (scan.rows, scan.bad_count) == (3, 2)
    scan.enforce(OnBadRow.SKIP, source.title)
    with pytest.raises(InputError, match=r"2 bad row\(s\), the first at line 3: missing text"):
        scan.enforce(OnBadRow.FAIL, source.title)
    limited = source.scan(limit=1)
    assert (limited.rows, limited.bad_count) == (1, 0)


def test_the_shared_labelled_format_reads_clean() -> None:
    if not SHARED_TEST.exists():
        pytest.skip("the shared data is not on this machine")
    source = ReviewFile(SHARED_TEST, require_label=True)
    scan = source.scan()
    assert scan.bad_count == 0
    assert scan.rows == 3572
    labels = [row.label for row in source.rows()]
    assert labels.count(1) == 2499


def run_cli(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers", *args],
        cwd=ROOT,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "RS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # the discard port: nothing listens
            "RS_PRODUCER_CONNECT_TIMEOUT_S": "0.5",
            **(env or {}),
        },
    )


def test_cli_stdin_bad_row_fail_stops_before_kafka() -> None:
    """--on-bad-row fail stops on the first pass, before Kafka is even asked."""
    result = run_cli(
        "replay", "-", "--format", "csv", "--on-bad-row", "fail", stdin=b"text,label\nok,1\nx,7\n"
    )
    assert result.returncode == 1
    assert "<stdin>: bad row at line 3: unknown label '7'" in result.stderr
    assert "nothing was sent" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_kafka_down_is_a_clear_error_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path / "r.txt", "one review\n")
    result = run_cli("bulk", str(path), "--no-progress")
    assert result.returncode == 2
    assert "error: cannot reach Kafka at 127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr


def test_cli_usage_errors() -> None:
    result = run_cli("replay", "--start-offset", "3", "file.csv")
    assert result.returncode == 2
    assert "need --from-topic" in result.stderr
    result = run_cli("replay")
    assert result.returncode == 2
    assert "INPUT file or --from-topic" in result.stderr
