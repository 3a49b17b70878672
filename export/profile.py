"""The reference profile a version ships with, computed on the exported model as it serves."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference import OnnxPredictor
from inference.monitoring import PROFILE_FILE, build_profile

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileData:
    """What a profile is computed from: the training reviews (which pieces the model knows)
    and held-out reviews with their labels (the distributions, the reference accuracy)."""

    training_texts: Sequence[str]
    held_out_texts: Sequence[str]
    held_out_labels: Sequence[int]


def write_profile(predictor: OnnxPredictor, data: ProfileData, workdir: Path) -> Path:
    probabilities = predictor.predict(list(data.held_out_texts)).tolist()
    profile = build_profile(
        predictor.preprocessor,
        training_texts=data.training_texts,
        held_out_texts=data.held_out_texts,
        held_out_labels=data.held_out_labels,
        held_out_probabilities=probabilities,
    )
    logger.info(
        "reference profile: %d held-out reviews, accuracy %.4f, %.1f%% of the vocabulary seen",
        profile.size,
        profile.accuracy,
        100 * profile.known.mean(),
    )
    return profile.save(workdir / PROFILE_FILE)
