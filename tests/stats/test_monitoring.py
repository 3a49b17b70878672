"""The drift monitor inside a real stats processor: profiles from the models topic, checks of
the stored predictions in PostgreSQL and as metrics, live accuracy from the feedback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from contracts import (
    Feedback,
    KafkaSettings,
    ModelChanged,
    Prediction,
    RequestFeatures,
    Source,
    Timings,
)
from inference import OnnxPredictor
from inference.synthetic import make_fast_bundle
from tests.conftest import unique
from tests.gateway_harness import announce
from tests.stats.test_processor import metric, send_feedback, send_predictions
from tests.statsprocess import StatsProcess, wait_for

FAST = {
    "RS_STATS_DRIFT_WINDOW": "50",
    "RS_STATS_DRIFT_STEP": "10",
    "RS_STATS_ACCURACY_INTERVAL_S": "0.5",
    "RS_STATS_ACCURACY_MIN_LABELLED": "20",
}


def prediction(prefix: str, i: int, version: str, features: RequestFeatures) -> Prediction:
    now = datetime.now(UTC)
    return Prediction(
        request_id=f"{prefix}-{version}-{i}",
        label=1,
        probability=0.55,  # unsure, unlike the reference
        model_name="m",
        model_version=version,
        worker_id="w",
        submitted_at=now - timedelta(milliseconds=5),
        predicted_at=now,
        source=Source.PRODUCER,
        timings=Timings(queue_ms=1, inference_ms=1, batch_size=1),
        features=features,
    )


async def test_drift_and_accuracy_alarms_reach_the_table_and_the_metrics(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    bundle = make_fast_bundle(tmp_path / "b", profile=True)
    profile = OnnxPredictor(bundle).profile
    assert profile is not None
    await announce(kafka, ModelChanged(model_name="m", version="7", alias="production",
                                       artifact_uri="x", sha256=bundle.sha256,
                                       profile=profile.summary()))  # fmt: skip
    prefix = unique("drift")
    # Long reviews full of words the version never saw: nothing like its reference.
    odd = RequestFeatures(words=300, unknown_share=0.9)
    watched = [prediction(prefix, i, "7", odd) for i in range(80)]
    unmonitored = [prediction(prefix, i, "8", RequestFeatures(words=5)) for i in range(5)]
    group = unique("stats")
    log_path = tmp_path / "stats.log"
    async with StatsProcess(kafka=kafka, database_url=database_url, group_id=group,
                            log_path=log_path, extra_env=FAST) as processor:  # fmt: skip
        await wait_for(lambda: _learnt(processor), timeout_s=60, what="the profile learnt")
        await send_predictions(kafka, watched + unmonitored)
        # Every one of them was wrong.
        await send_feedback(kafka, [Feedback(request_id=p.request_id, label=0,
                                             source=Source.REPLAY) for p in watched])  # fmt: skip

        async def alarms() -> bool:
            samples = await processor.metrics()
            return (
                metric(samples, "rs_stats_drift_alarm", model_version="7",
                       feature="unknown_share") == 1
                and metric(samples, "rs_stats_accuracy_alarm", model_version="7") == 1
            )  # fmt: skip

        await wait_for(alarms, timeout_s=60, what="drift and accuracy alarms")
        samples = await processor.metrics()

        async def alarm_written() -> bool:
            # The alarm's metric is set just before its check is written: wait for the row
            # before stopping the processor, or the stop may cancel that write.
            accuracy = (await _checks(database_url)).get("accuracy")
            return accuracy is not None and bool(accuracy["alarmed"])

        await wait_for(alarm_written, timeout_s=30, what="the accuracy alarm written")

    assert metric(samples, "rs_stats_drift_alarm", model_version="7", feature="length") == 1
    assert metric(samples, "rs_stats_drift_score", model_version="7", feature="unknown_share") > 1
    assert metric(samples, "rs_stats_live_accuracy", model_version="7") == 0
    assert metric(samples, "rs_stats_unmonitored_predictions_total", model_version="8") == 5
    by_feature = await _checks(database_url)
    # 80 predictions, a window of 50 checked every 10: checks at 50, 60, 70 and 80.
    assert by_feature["unknown_share"]["checks"] == 4
    assert by_feature["unknown_share"]["alarmed"]
    assert by_feature["unknown_share"]["w"] == 50
    assert by_feature["accuracy"]["alarmed"]


async def _checks(database_url: str) -> dict[str, asyncpg.Record]:
    """Version 7's drift checks in ``drift_checks``, per feature."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT feature, count(*) AS checks, bool_or(alarm) AS alarmed, max(window_size) AS w"
            " FROM drift_checks WHERE model_version = '7' GROUP BY feature"
        )
    finally:
        await conn.close()
    return {r["feature"]: r for r in rows}


async def _learnt(processor: StatsProcess) -> bool:
    return "watching version 7 for drift" in processor.log()
