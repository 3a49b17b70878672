"""When the watcher decides again whether the version an alias names may ship.

The rule itself is ``inference.release.release_problem`` (shared with the workers, whose
registry fallback at start-up must not load what the watcher refused): gates passed or an
override, and no rollback since.
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion

from inference.release import OVERRIDE_AT, ROLLED_BACK_AT


def key(version: ModelVersion) -> tuple[str, ...]:
    """What a verdict depends on: a new override or rollback makes it worth deciding again."""
    tags = version.tags
    return (
        str(version.version),
        tags.get("bundle_sha256", ""),
        tags.get("gates", ""),
        tags.get(OVERRIDE_AT, ""),
        tags.get(ROLLED_BACK_AT, ""),
    )
