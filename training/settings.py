"""Settings of a training run (``RS_TRAIN_*``), read once by ``python -m training``.

Nested values use ``__``: ``RS_TRAIN_FAST__EPOCHS=5``, ``RS_TRAIN_ACCURATE__MAX_LENGTH=128``.
Export, gate and registry settings come from ``RS_EXPORT_*`` (see ``export.settings``).

Below the environment sits the parameters file (``RS_TRAIN_PARAMS_FILE``, by default
``training/params.json``, written by ``python -m training tune``): its ``fast`` / ``accurate``
sections replace the code's defaults, and every environment variable or option still wins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from contracts.reviewfiles import DatasetFormat, LabelRule, shared_data
from export.settings import Settings as ExportSettings

ROOT = Path(__file__).resolve().parent.parent
SHARED_YELP = shared_data("yelp")
PARAMS_FILE = ROOT / "training" / "params.json"
FAMILY_SECTIONS = ("fast", "accurate")

# Where a run executes, not what it makes: recorded as run tags, never as parameters, and
# not part of the fingerprint (a rebuilt image with the same lock and code trains the same).
PLACE_FIELDS = {"image", "image_digest"}

FamilyName = Literal["fast", "accurate"]
Device = Literal["auto", "cpu", "cuda"]


class FastSettings(BaseModel):
    """fastText-style: hashed word uni+bigrams, embedding table, masked mean, linear layer."""

    model_config = {"frozen": True}

    buckets: int = Field(1 << 19, description="hash buckets (embedding rows); 0 is padding")
    max_tokens: int = Field(400, description="words per review kept before hashing")
    dim: int = Field(16, description="embedding width")
    token_dropout: float = Field(0.0, description="share of n-grams dropped per training step")
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = Field(0.1, description="Adagrad learning rate")
    threads: int | None = Field(1, description="torch CPU threads; None = torch's default")


class AccurateSettings(BaseModel):
    """all-MiniLM-L6-v2 encoder, mean pooling, linear head; fine-tuned end to end."""

    model_config = {"frozen": True}

    max_length: int = Field(256, description="WordPiece tokens per review (truncated)")
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = Field(5e-5, description="AdamW peak learning rate")
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    dropout: float = 0.1
    threads: int | None = Field(None, description="torch CPU threads; None = torch's default")
    bf16: bool = Field(True, description="bfloat16 autocast when training on a GPU")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RS_TRAIN_", env_nested_delimiter="__", frozen=True
    )

    family: FamilyName = "fast"
    train_path: Path = Field(SHARED_YELP / "train.csv.gz", description="training reviews")
    test_path: Path = Field(SHARED_YELP / "test.csv.gz", description="held out, figures only")
    data_format: DatasetFormat = Field("auto", description="auto | reviewstream | yelp_polarity")
    positive_min_stars: float = Field(3.0, description="stars at or above this are positive")
    drop_three_star: bool = Field(False, description="leave 3-star reviews out")
    skip_malformed: bool = Field(False, description="skip and count bad rows instead of failing")
    validation_fraction: float = Field(0.1, description="share of train held out, stratified")
    max_train_rows: int | None = Field(None, description="seeded stratified subset of train")
    max_test_rows: int | None = Field(None, description="seeded stratified subset of test")
    seed: int = 13
    params_file: Path = Field(
        PARAMS_FILE, description="tuned family parameters, read below the environment"
    )
    device: Device = "auto"
    experiment: str = Field("reviewstream-sentiment", description="MLflow experiment")
    image: str | None = Field(
        None, description="the container image the run executes in (None: not in one)"
    )
    image_digest: str | None = Field(
        None, description="that image's digest, sha256:... (known to whoever started it)"
    )
    promote: bool = Field(True, description="move the serving alias when every gate passes")
    progress: bool = Field(True, description="show a progress bar")
    fast: FastSettings = Field(default_factory=FastSettings)
    accurate: AccurateSettings = Field(default_factory=AccurateSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)

    @property
    def label_rule(self) -> LabelRule:
        return LabelRule(self.positive_min_stars, self.drop_three_star)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Last of all, so that options and environment variables override a tuned value.
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            ParamsFileSource(settings_cls),
        )


class ParamsFileSource(PydanticBaseSettingsSource):
    """The family sections of the parameters file; a missing file means the code's defaults."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        # The sources before this one decided where the file is (an option or RS_TRAIN_PARAMS_FILE).
        path = Path(self.current_state.get("params_file") or PARAMS_FILE)
        return read_params(path)


def read_params(path: Path) -> dict[str, Any]:
    """The ``fast`` / ``accurate`` sections of a parameters file ({} when there is none)."""
    if not path.is_file():
        return {}
    content = json.loads(path.read_text())
    if not isinstance(content, dict):
        raise ValueError(f"{path}: a parameters file holds a JSON object")
    return {name: content[name] for name in FAMILY_SECTIONS if name in content}


# Feedback sources allowed into training data by default: labels people gave through the
# gateway. Replays and bulk producers send labelled datasets, which may be anyone's (or the
# test set itself): they are opted in by name.
DEFAULT_FEEDBACK_SOURCES = ("rest", "ws")
CODE_PACKAGES = ("training", "export", "inference", "contracts")
RETRAIN_ALERTS = ("DataDrift", "LiveAccuracyDrop")


class RetrainSettings(BaseSettings):
    """``python -m training retrain`` and ``snapshot`` (``RS_TRAIN_RETRAIN_*``): what a data
    snapshot holds, where snapshots are kept, and what makes a new one."""

    model_config = SettingsConfigDict(env_prefix="RS_TRAIN_RETRAIN_", frozen=True)

    min_new_feedback: int = Field(
        1000,
        ge=0,
        description="new labelled live reviews since the last snapshot that make a new one",
    )
    feedback_sources: tuple[str, ...] = Field(
        DEFAULT_FEEDBACK_SOURCES, description="feedback sources whose labels may train a model"
    )
    data_experiment: str = Field(
        "reviewstream-data", description="MLflow experiment that keeps the data snapshots"
    )
    code_root: Path = Field(ROOT, description="where the fingerprinted code and uv.lock are")
    code_packages: tuple[str, ...] = Field(
        CODE_PACKAGES, description="packages whose .py files are part of the fingerprint"
    )
    alerts: tuple[str, ...] = Field(
        RETRAIN_ALERTS, description="firing alerts (models.alerts) that force a new snapshot"
    )
    alerts_group_id: str = Field(
        "reviewstream-retrain", description="consumer group that remembers the alerts handled"
    )
    alert_max_age_s: float = Field(
        86400.0, gt=0, description="older firing alerts are read and ignored"
    )
    follow_pause_s: float = Field(
        60.0, gt=0, description="retrain --follow: pause after a failed retrain or Kafka error"
    )
    request_scan: int = Field(
        1_000_000, ge=1, description="requests read from the topic's tail to find labelled texts"
    )
    request_scan_limit_s: float = Field(
        120.0, gt=0, description="longest time spent reading the requests topic"
    )
