"""The one reader of secret files (MLflow passwords, the webhook secret, the server's keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.secret_files import SecretFileError, read_secret_file


def test_a_secret_is_read_without_the_whitespace_around_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("  s3cret value\n\n")
    assert read_secret_file(secret) == "s3cret value"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"cannot read the secret file .*/secret: .*No such file"),
        (" \n", r"the secret file .*/secret is empty"),
    ],
)
def test_a_missing_or_empty_secret_file_is_refused_by_name(
    tmp_path: Path, content: str | None, message: str
) -> None:
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(SecretFileError, match=message):
        read_secret_file(secret)
