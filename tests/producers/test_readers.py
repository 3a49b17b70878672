"""The producers' policy over the reader: a first pass that counts and reports bad rows, the
--on-bad-row policy, InputError for an unusable file, and the CLI before Kafka (the formats are
tested with the reader, in test_contracts_reviewfiles)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.reviewfiles import ReviewFile
from producers import readers
from producers.errors import InputError
from producers.readers import OnBadRow

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_scan_counts_and_enforces_the_policy(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "text,label\na,1\n,1\nb,0\nc,9\nd,1\n")
    source = ReviewFile(path, require_label=True)
    scan = readers.scan(source)
    assert (scan.rows, scan.bad_count) == (3, 2)
    scan.enforce(OnBadRow.SKIP, source.title)
    with pytest.raises(InputError, match=r"2 bad row\(s\), the first at line 3: missing text"):
        scan.enforce(OnBadRow.FAIL, source.title)
    limited = readers.scan(source, limit=1)
    assert (limited.rows, limited.bad_count) == (1, 0)


def test_an_unusable_input_is_an_input_error_on_every_pass(tmp_path: Path) -> None:
    data = gzip.compress(("text,label\n" + "a review,1\n" * 5000).encode())
    damaged = tmp_path / "r.csv.gz"
    damaged.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged after line"):
        readers.scan(ReviewFile(damaged))
    with pytest.raises(InputError, match="damaged after line"):
        list(readers.rows(ReviewFile(damaged)))
    header = write(tmp_path / "h.csv", "review,label\nhello,1\n")
    with pytest.raises(InputError, match=r"no column 'text'.*--text-column"):
        readers.scan(ReviewFile(header))
    with pytest.raises(InputError, match="cannot read"):
        readers.digest(tmp_path / "missing.csv")


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
