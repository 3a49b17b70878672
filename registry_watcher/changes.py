"""When a registry state is news: the pure rule behind every ModelChanged the watcher sends."""

from __future__ import annotations

from contracts import ChangeReason, ModelChanged


def change(published: ModelChanged | None, current: ModelChanged | None) -> ModelChanged | None:
    """The event to publish when the alias now points at ``current``, given the last event
    ``published`` for that model; None when there is nothing new to say.

    An alias that disappeared is not news: workers keep serving what they have.
    """
    if current is None:
        return None
    if published is not None and _same(published, current):
        return None
    if published is None:
        reason = ChangeReason.PROMOTED
    elif _older(current.version, published.version):
        reason = ChangeReason.ROLLED_BACK
    else:
        reason = ChangeReason.ALIAS_MOVED
    return current.model_copy(update={"reason": reason})


def _same(a: ModelChanged, b: ModelChanged) -> bool:
    return (a.model_name, a.alias, a.version, a.sha256, a.artifact_uri) == (
        b.model_name,
        b.alias,
        b.version,
        b.sha256,
        b.artifact_uri,
    )


def _older(version: str, than: str) -> bool:
    return version.isdigit() and than.isdigit() and int(version) < int(than)
