"""Signatures on the models topic (runtime.signing): what is trusted and what is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from runtime.signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    Signer,
    TrustedKeys,
    Verifier,
    app,
    new_key_pair,
    refused_counter,
)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "release.pem", tmp_path / "release.pub"
    new_key_pair(private, public)
    return private, public


def test_a_signed_record_and_a_signed_tombstone_are_trusted(keys: tuple[Path, Path]) -> None:
    signer, verifier = Signer.from_file(keys[0]), Verifier.from_files([keys[1]])
    for value in (b'{"version": "1"}', None, b""):
        assert verifier.refusal(b"model", value, signer.headers(b"model", value)) is None


def test_unsigned_foreign_and_tampered_records_are_refused_and_counted(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    verifier = Verifier.from_files([keys[1]], refused_counter("test", registry))
    signer = Signer.from_file(keys[0])
    new_key_pair(tmp_path / "other.pem", tmp_path / "other.pub")
    other = Signer.from_file(tmp_path / "other.pem")
    value = b'{"version": "1"}'
    headers = signer.headers(b"model", value)
    assert verifier.refusal(b"model", value, []) == "unsigned"
    assert verifier.refusal(b"model", value, other.headers(b"model", value)) == "unknown_key"
    assert verifier.refusal(b"model", b'{"version": "2"}', headers) == "bad_signature"
    assert verifier.refusal(b"other", value, headers) == "bad_signature"  # another key
    assert verifier.refusal(b"model", None, headers) == "bad_signature"  # turned into a tombstone
    # The signature of one record does not fit a split of the same bytes.
    assert verifier.refusal(b"mode", b"l" + value, headers) == "bad_signature"
    forged = [(KEY_ID_HEADER, dict(headers)[KEY_ID_HEADER]), (SIGNATURE_HEADER, b"\0" * 64)]
    assert verifier.refusal(b"model", value, forged) == "bad_signature"
    refused = {
        reason: registry.get_sample_value("rs_test_models_refused_total", {"reason": reason})
        for reason in ("unsigned", "unknown_key", "bad_signature")
    }
    assert refused == {"unsigned": 1, "unknown_key": 1, "bad_signature": 5}


def test_without_keys_every_record_passes_and_two_keys_can_be_trusted_at_once(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    assert not Verifier({}).enabled
    assert Verifier({}).refusal(b"model", b"{}", []) is None
    new_key_pair(tmp_path / "next.pem", tmp_path / "next.pub")
    both = TrustedKeys(verify_key_files=f"{keys[1]}, {tmp_path / 'next.pub'}").verifier()
    for private in (keys[0], tmp_path / "next.pem"):
        assert both.refusal(b"m", b"{}", Signer.from_file(private).headers(b"m", b"{}")) is None


def test_key_files_of_the_wrong_kind_are_refused_clearly(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        Verifier.from_files([keys[0]])  # a private key where a public one is expected
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        Signer.from_file(keys[1])


def test_the_command_makes_a_private_key_only_its_owner_reads_and_never_overwrites(
    tmp_path: Path,
) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    args = ["new", "--private", str(private), "--public", str(public)]
    made = CliRunner().invoke(app, args)
    assert made.exit_code == 0, made.output
    assert len(made.output.strip()) == 16  # the key's id
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    before = private.read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2, again.output  # a usage error, the key kept
    assert private.read_bytes() == before
