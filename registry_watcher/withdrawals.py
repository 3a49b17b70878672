"""When an alias that disappeared is news: a challenger withdrawn from shadow.

The serving alias disappearing is not news (``registry_watcher.changes``): its workers keep
serving what they have. A challenger's disappearing is: its shadow workers must stop comparing
a version nobody shadows any more. The watcher says so with a tombstone for the challenger's
key (``<model>@<alias>``), which is also how compaction forgets the key; no new message field
is needed, and a consumer that ignores tombstones (the serving workers) is unaffected.
"""

from __future__ import annotations

from contracts import ModelChanged
from contracts.topics import SERVING_ALIAS


def withdrawn(alias: str, published: ModelChanged | None, current: ModelChanged | None) -> bool:
    """True when the watcher must publish a tombstone for ``alias``: it announced a version
    and the registry no longer names any."""
    return alias != SERVING_ALIAS and published is not None and current is None
