"""Settings of an inference worker, read once in ``__main__`` (prefix ``RS_WORKER_``)."""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings
from inference.versions import CHALLENGER_ALIAS, DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from runtime.settings import CommaSeparated
from runtime.signing import TrustedKeys

SERVING_GROUP = "reviewstream-workers"
SHADOW_GROUP = "reviewstream-shadow"


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_WORKER_", frozen=True)

    host: str = Field("127.0.0.1", description="bind address of /healthz, /readyz and /metrics")
    port: int = Field(9101, ge=0, le=65535, description="their port; 0 picks a free one (logged)")
    worker_id: str = Field(
        default_factory=default_worker_id,
        validation_alias=AliasChoices("RS_WORKER_ID", "worker_id"),
        description="named in every prediction (env RS_WORKER_ID)",
    )
    group_id: str = Field(
        SERVING_GROUP,
        description="consumer group on the requests topic (a shadow worker's default: "
        f"{SHADOW_GROUP}, so that it reads every request beside the serving group)",
    )
    role: Literal["serving", "shadow"] = Field(
        "serving",
        description="shadow: answer into the shadow predictions topic only, never a client, "
        f"no DLQ, no explanations (the default when model_alias is {CHALLENGER_ALIAS!r})",
    )

    model_name: str = DEFAULT_MODEL_NAME
    model_alias: str = DEFAULT_ALIAS
    mlflow_tracking_uri: str = Field("http://127.0.0.1:5000", alias="MLFLOW_TRACKING_URI")
    artifact_prefixes: CommaSeparated = Field(
        default_factory=list,
        description="bundle addresses fetched besides models:/, runs:/ and mlflow-artifacts:/, "
        "comma-separated: another tracking server's artifact proxy, mlflow-artifacts://host:port/ "
        "(a worker fetches through an artifact proxy only)",
    )
    registry_poll_interval_s: float = Field(
        5.0, gt=0, description="while no model is served, how often to ask the registry"
    )
    load_retry_cap_s: float = Field(
        30.0, gt=0, description="a failed load is retried with backoff, at most this far apart"
    )
    heartbeat_s: float = Field(
        5.0, gt=0, description="publish this worker's status on the fleet topic this often"
    )

    max_batch_size: int = Field(
        256, ge=1, description="records per ONNX Runtime call (and per fetch) at most"
    )
    # 0: take what has arrived. While one batch is classified the next gathers in the fetch
    # buffer, so batches grow with the load without adding a wait at low load.
    max_wait_ms: float = Field(
        0.0, ge=0, description="after the first record, wait this long for a fuller batch"
    )
    inline_max_batch: int = Field(
        4,
        ge=0,
        description="batches of at most this many requests are classified on the event loop, "
        "not in a thread: the hand-off costs more than the model (0: always in a thread)",
    )
    max_batches_in_flight: int = Field(
        4, ge=1, description="batches sent and awaiting acknowledgement and commit, at most"
    )
    commit_interval_ms: float = Field(
        100.0, ge=0, description="commit settled offsets this often under load (and when idle)"
    )
    idle_poll_ms: int = Field(200, ge=1, description="fetch timeout while nothing arrives")
    max_text_chars: int = Field(20_000, ge=1, description="longer texts go to the DLQ")
    threshold: float = Field(0.5, ge=0, le=1, description="label 1 when probability >= this")

    intra_op_threads: int = Field(1, ge=0, description="ONNX Runtime intra-op threads (0 = auto)")
    inter_op_threads: int = Field(1, ge=0, description="ONNX Runtime inter-op threads (0 = auto)")

    session_timeout_ms: int = Field(10_000, description="consumer group session timeout")
    heartbeat_interval_ms: int = Field(3_000, description="consumer group heartbeat interval")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    trusted_keys: TrustedKeys = Field(default_factory=TrustedKeys)

    @model_validator(mode="before")
    @classmethod
    def _shadow_defaults(cls, data: Any) -> Any:
        """Following the challenger means shadowing it, in a group of its own, unless said
        otherwise: a challenger in the serving group would take requests from production."""
        if not isinstance(data, dict):
            return data
        if data.get("role") is None and data.get("model_alias") == CHALLENGER_ALIAS:
            data = {**data, "role": "shadow"}
        if data.get("role") == "shadow" and data.get("group_id") is None:
            data = {**data, "group_id": SHADOW_GROUP}
        return data

    @property
    def shadow(self) -> bool:
        return self.role == "shadow"

    @property
    def answers_topic(self) -> str:
        """Where this worker's predictions and error replies go."""
        return self.kafka.shadow_predictions_topic if self.shadow else self.kafka.predictions_topic
