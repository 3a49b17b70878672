"""The live replay gate: before the alias moves, the candidate and the serving version answer
the most recent labelled live reviews (``export.live``), and the candidate must not be worse by
more than the margin. A held-out test set says how a model does on last year's reviews; this
says how it does on this week's."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from export import gates as gate
from export.live import LiveReview, recent_labelled
from export.settings import Settings
from inference import OnnxPredictor
from inference.registry import download_bundle, serving_version

logger = logging.getLogger(__name__)


def accuracy(predictor: OnnxPredictor, reviews: list[LiveReview], threshold: float = 0.5) -> float:
    if not reviews:
        return 0.0
    probabilities = predictor.predict([r.text for r in reviews])
    labels = np.array([r.label for r in reviews])
    return float(np.mean((probabilities >= threshold).astype(int) == labels))


def replay_gate(
    client: MlflowClient,
    settings: Settings,
    candidate: OnnxPredictor,
    workdir: Path,
    *,
    candidate_version: str | None = None,
) -> gate.Gate | None:
    """Score the candidate and the version the alias names now on the latest labelled live
    reviews; None when no database is configured (the gate is skipped). Raises when the
    database, the requests topic or the registry cannot be read."""
    if settings.database_url is None:
        logger.info("live replay gate skipped: DATABASE_URL is not set")
        return None
    production = serving_version(client, settings.model_name, settings.alias)
    if production is None or production.version == candidate_version:
        return gate.live_replay(
            0.0, None, None, reviews=0, min_reviews=settings.replay_min_reviews, margin=0.0
        )
    reviews = asyncio.run(
        recent_labelled(
            settings.kafka,
            settings.database_url.get_secret_value(),
            limit=settings.replay_reviews,
            scan=settings.replay_scan,
        )
    )
    bundle = download_bundle(production, workdir / f"live-production-v{production.version}")
    result = gate.live_replay(
        accuracy(candidate, reviews),
        accuracy(OnnxPredictor(bundle), reviews),
        production.version,
        reviews=len(reviews),
        min_reviews=settings.replay_min_reviews,
        margin=settings.replay_margin,
    )
    logger.info("gate %s: %s - %s", result.name, result.status, result.detail)
    return result
