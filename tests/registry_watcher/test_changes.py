"""The registry watcher's rule for news, and its settings."""

from __future__ import annotations

import pytest

from contracts import ChangeReason, ModelChanged
from registry_watcher.challengers import Challengers, withdrawn
from registry_watcher.changes import change
from registry_watcher.service import WatcherMetrics
from registry_watcher.settings import Settings


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
    assert settings.alias == "production"
    assert settings.shadow_aliases == ["challenger"]


def test_challengers_are_announced_beside_the_serving_alias(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RS_WATCHER_MODEL_NAMES", "a,b")
    monkeypatch.setenv("RS_WATCHER_SHADOW_ALIASES", " challenger, production ,")
    metrics = WatcherMetrics()
    found = Challengers(
        Settings(), published=metrics.published, errors=metrics.publish_errors, signer=None
    )
    # The serving alias is never a challenger, whatever the list says.
    assert found.targets() == [("a", "challenger"), ("b", "challenger")]
    monkeypatch.setenv("RS_WATCHER_SHADOW_ALIASES", "")
    assert Challengers(Settings(), published=metrics.published,
                       errors=metrics.publish_errors, signer=None).targets() == []  # fmt: skip


def test_a_withdrawn_challenger_is_news() -> None:
    v1 = event("1").model_copy(update={"alias": "challenger"})
    assert withdrawn(v1, None)
    assert not withdrawn(None, None)  # never announced: nothing to withdraw
    assert not withdrawn(v1, v1)
