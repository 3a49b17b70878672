"""The worker's settings: the agreed variable names and defaults."""

from __future__ import annotations

import pytest

from workers.settings import Settings


def test_defaults_follow_the_service_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 9101)
    assert settings.group_id == "reviewstream-workers"
    assert (settings.model_name, settings.model_alias) == ("reviewstream-sentiment", "production")
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.worker_id


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "RS_WORKER_ID": "w-7",
        "RS_WORKER_PORT": "0",
        "RS_WORKER_MAX_BATCH_SIZE": "128",
        "RS_WORKER_INTRA_OP_THREADS": "2",
        "RS_KAFKA_REQUESTS_TOPIC": "r",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.worker_id == "w-7"
    assert settings.port == 0
    assert settings.max_batch_size == 128
    assert settings.intra_op_threads == 2
    assert settings.kafka.requests_topic == "r"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"


def test_the_challenger_alias_shadows_in_a_group_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RS_WORKER_MODEL_ALIAS", "challenger")
    settings = Settings()
    assert settings.shadow
    assert settings.group_id == "reviewstream-shadow"
    assert settings.answers_topic == settings.kafka.shadow_predictions_topic
    # Said explicitly, both win over the defaults.
    monkeypatch.setenv("RS_WORKER_GROUP_ID", "mine")
    assert Settings().group_id == "mine"
    monkeypatch.setenv("RS_WORKER_ROLE", "serving")
    assert not Settings().shadow


def test_a_serving_worker_answers_on_the_predictions_topic() -> None:
    settings = Settings()
    assert settings.role == "serving"
    assert settings.answers_topic == settings.kafka.predictions_topic
    shadow = Settings(role="shadow")
    assert (shadow.group_id, shadow.model_alias) == ("reviewstream-shadow", "production")
