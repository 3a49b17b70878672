"""The registry watcher's rule for news, and its settings."""

from __future__ import annotations

import pytest

from contracts import ChangeReason, ModelChanged
from registry_watcher.changes import change
from registry_watcher.settings import Settings
from registry_watcher.withdrawals import withdrawn


def event(version: str, sha: str = "a", uri: str | None = None) -> ModelChanged:
    return ModelChanged(
        model_name="m",
        version=version,
        alias="production",
        artifact_uri=uri or f"mlflow-artifacts:/1/{version}/artifacts/bundle",
        sha256=sha * 64,
    )


def test_no_alias_is_not_news() -> None:
    assert change(None, None) is None
    assert change(event("3"), None) is None


def test_the_first_version_seen_is_a_promotion() -> None:
    news = change(None, event("1"))
    assert news is not None
    assert news.reason == ChangeReason.PROMOTED
    assert news.version == "1"


def test_the_same_state_is_not_news_again() -> None:
    assert change(event("2"), event("2")) is None


@pytest.mark.parametrize(
    ("published", "current", "reason"),
    [
        (event("2"), event("3"), ChangeReason.ALIAS_MOVED),
        (event("10"), event("9"), ChangeReason.ROLLED_BACK),
        (event("3", sha="a"), event("3", sha="b"), ChangeReason.ALIAS_MOVED),
    ],
)
def test_a_move_is_news_with_its_reason(
    published: ModelChanged, current: ModelChanged, reason: ChangeReason
) -> None:
    news = change(published, current)
    assert news is not None
    assert news.reason == reason
    assert (news.version, news.sha256) == (current.version, current.sha256)


def test_model_names_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS_WATCHER_MODEL_NAMES", " a, b ,,c")
    monkeypatch.setenv("RS_WATCHER_POLL_INTERVAL_S", "0.5")
    settings = Settings()
    assert settings.model_names == ["a", "b", "c"]
    assert settings.poll_interval_s == 0.5


def test_default_model_name_and_aliases() -> None:
    settings = Settings()
    assert settings.model_names == ["reviewstream-sentiment"]
    assert settings.aliases == ["production", "challenger"]
    assert settings.watched() == [
        ("reviewstream-sentiment", "production"),
        ("reviewstream-sentiment", "challenger"),
    ]


def test_aliases_from_the_environment_and_the_old_single_alias(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RS_WATCHER_ALIASES", "production, challenger ,")
    assert Settings().aliases == ["production", "challenger"]
    monkeypatch.delenv("RS_WATCHER_ALIASES")
    monkeypatch.setenv("RS_WATCHER_ALIAS", "production")  # the setting before issue 15
    assert Settings().aliases == ["production"]


def test_a_withdrawn_challenger_is_news_a_vanished_serving_alias_is_not() -> None:
    v1 = event("1").model_copy(update={"alias": "challenger"})
    assert withdrawn("challenger", v1, None)
    assert not withdrawn("challenger", None, None)  # never announced: nothing to withdraw
    assert not withdrawn("challenger", v1, v1)
    assert not withdrawn("production", event("1"), None)  # workers keep serving
