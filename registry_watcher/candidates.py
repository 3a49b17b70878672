"""The next version: checked and announced before the alias names it, so a move only switches.

A version is registered and gated well before it is promoted. The watcher looks at a model's
newest versions every poll; the newest one that may ship (``inference.release.release_problem``:
gates passed or an override, no rollback since) and is newer than the version serving is the
*candidate*. The watcher checks its bundle then (download, sha256, reference outputs), not when
the alias moves, and announces it on the models topic under the pseudo-alias
``<alias>~candidate`` (``contracts.topics.candidate_alias``): workers fetch and verify its bundle
ahead, and a move to it loads from their disk. Nothing about the release changes: the move is
decided as before on the registry's word at the time of the move, and every worker checks the
bundle again before the swap (``workers.registry``: unchanged since its sha256 was verified).
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow.entities.model_registry import ModelVersion

from inference.registry import SHA_TAG
from inference.release import release_problem

# How many of a model's newest versions one look reads (one registry call).
SCANNED = 5


def candidate(versions: Iterable[ModelVersion], serving: str | None) -> ModelVersion | None:
    """The newest version that may ship and is newer than ``serving`` (any, if none serves);
    one without a registered bundle sha256 is no bundle to fetch."""
    for version in sorted(versions, key=_number, reverse=True):
        if serving is not None and _number(version) <= _as_number(serving):
            return None
        if SHA_TAG in version.tags and release_problem(version) is None:
            return version
    return None


def _number(version: ModelVersion) -> int:
    return _as_number(str(version.version))


def _as_number(version: str) -> int:
    return int(version) if version.isdigit() else -1
