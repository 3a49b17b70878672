"""``python -m gateway.keys``: make API keys and store only their hashes.

python -m gateway.keys new --name ui --role client --file keys.json
python -m gateway.keys revoke --name ui --file keys.json
echo -n "$KEY" | python -m gateway.keys hash

A running gateway follows its key file: an added or revoked key takes effect within seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.auth import KeyFile, KeyRecord, Role, hash_key, load_key_file, new_key

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command()
def new(
    name: Annotated[str, typer.Option(help="who the key is for")],
    role: Annotated[str, typer.Option(help="viewer, client or admin")] = "client",
    file: Annotated[
        Path | None, typer.Option(help="add the hashed key to this JSON file (made if missing)")
    ] = None,
) -> None:
    """Print a new key once; store (or print) only its sha256."""
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from None
    key = new_key()
    record = KeyRecord(name=name, role=parsed, sha256=hash_key(key))
    if file is not None:
        records = load_key_file(file) if file.exists() else []
        if any(r.name == name for r in records):
            raise typer.BadParameter(
                f"{file} already has a key named {name!r}", param_hint="--name"
            )
        _write(file, [*records, record])
        typer.echo(f"added {name!r} ({parsed.label}) to {file}", err=True)
    else:
        typer.echo(
            "record for RS_GATEWAY_API_KEYS or a key file: "
            + json.dumps(record.model_dump(mode="json")),
            err=True,
        )
    typer.echo(key)


@app.command()
def revoke(
    name: Annotated[str, typer.Option(help="the key's name")],
    file: Annotated[Path, typer.Option(help="the JSON key file")],
) -> None:
    """Remove a key from the file; gateways following it refuse the key within seconds and
    close its WebSockets."""
    records = load_key_file(file)
    kept = [r for r in records if r.name != name]
    if len(kept) == len(records):
        raise typer.BadParameter(f"{file} has no key named {name!r}", param_hint="--name")
    _write(file, kept)
    typer.echo(f"revoked {name!r} in {file}", err=True)


def _write(file: Path, records: list[KeyRecord]) -> None:
    """Whole or not at all: a gateway reading the file never sees half of it."""
    partial = file.with_name(f".{file.name}.tmp")
    partial.write_text(KeyFile(keys=records).model_dump_json(indent=2) + "\n")
    partial.replace(file)


@app.command("hash")
def hash_command() -> None:
    """Read a key on stdin and print its sha256 (what the key file stores)."""
    typer.echo(hash_key(sys.stdin.read().strip()))


if __name__ == "__main__":
    app()
