"""The API key file, followed while the gateway runs: a key added or revoked in
``RS_GATEWAY_API_KEYS_FILE`` takes effect within seconds, without a restart.

The file's folder is watched, not the file: Kubernetes updates a mounted Secret by swapping
a ``..data`` symlink, and editors replace a file rather than write it in place. A file that
does not parse keeps the keys in use (a half-written edit must not lock everyone out).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from watchfiles import Change, awatch

from gateway.auth import KeyRecord, KeyRing, load_key_file

log = logging.getLogger(__name__)


async def follow_key_file(path: Path, keyring: KeyRing, *, also: Sequence[KeyRecord] = ()) -> None:
    """Reload ``path`` into ``keyring`` (with the keys of ``also``) on every change."""
    names = {path.name, "..data"}

    def concerns(change: Change, changed: str) -> bool:
        return Path(changed).name in names

    async for _ in awatch(path.parent, watch_filter=concerns, recursive=False, debounce=200):
        try:
            records = load_key_file(path)
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            log.error("%s is unreadable, the keys in use stay: %s", path, exc)
            continue
        keyring.replace([*also, *records])
        log.info("API keys reloaded from %s: %d keys", path, len(keyring))
