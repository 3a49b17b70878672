"""Reference profiles and per-request features: what the drift monitor compares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts import RequestFeatures
from inference import OnnxPredictor, load_bundle
from inference.monitoring import PROFILE_FILE, Histogram, Profile, load_profile
from inference.synthetic import make_fast_bundle, profile_texts


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> OnnxPredictor:
    return OnnxPredictor(make_fast_bundle(tmp_path_factory.mktemp("p") / "b", profile=True))


def test_a_bundle_carries_its_profile_and_an_old_one_has_none(
    predictor: OnnxPredictor, tmp_path: Path
) -> None:
    profile = predictor.profile
    assert profile is not None
    assert profile.size == 400
    assert set(profile.histograms) == {"confidence", "positive", "length", "unknown_share"}
    for histogram in profile.histograms.values():
        assert sum(histogram.shares) == pytest.approx(1.0)
    assert PROFILE_FILE in predictor.bundle.manifest["files"]  # verified like every file
    assert OnnxPredictor(make_fast_bundle(tmp_path / "old")).profile is None


def test_a_profile_survives_saving_and_its_summary_is_small(
    predictor: OnnxPredictor, tmp_path: Path
) -> None:
    profile = predictor.profile
    assert profile is not None
    again = Profile.load(profile.save(tmp_path / "p.json"))
    assert again.summary() == profile.summary()
    assert np.array_equal(again.known, profile.known)
    assert len(profile.summary().model_dump_json()) < 2000  # fits a registry tag


def test_an_unreadable_profile_serves_the_version_unmonitored(tmp_path: Path) -> None:
    (tmp_path / PROFILE_FILE).write_text('{"profile_version": 99}')
    assert load_profile(tmp_path) is None


def test_features_say_how_long_a_review_is_and_how_much_of_it_is_unknown(
    predictor: OnnxPredictor,
) -> None:
    seen = profile_texts(400, seed=1)[0][0]  # a training text of the profile: all known
    probabilities, features = predictor.predict_described(
        [seen, "zebra quokka xylophone", "", "the food was"]
    )
    assert len(probabilities) == 4
    assert features[0] == RequestFeatures(words=len(seen.split()), unknown_share=0.0)
    assert features[1].words == 3
    assert features[1].unknown_share is not None
    assert features[1].unknown_share >= 0.6  # 4,096 buckets: a collision may hit a known one
    assert features[2] == RequestFeatures(words=0, unknown_share=0.0)
    assert features[3].unknown_share == 0.0
    assert np.allclose(probabilities, predictor.predict([seen, "zebra quokka xylophone", "",
                                                         "the food was"]))  # fmt: skip


def test_without_a_profile_only_the_length_is_measured(tmp_path: Path) -> None:
    _, features = OnnxPredictor(make_fast_bundle(tmp_path / "b")).predict_described(["a b c"])
    assert features == [RequestFeatures(words=3, unknown_share=None)]


def test_histogram_bins_are_closed_on_the_left_and_the_last_is_open() -> None:
    histogram = Histogram.of([0.5, 0.55, 0.6, 0.99, 1.0], [0.5, 0.6, 0.9])
    assert histogram.shares == [0.4, 0.2, 0.4]
    assert histogram.bin_of(0.2) == 0  # below the first edge: the first bin


def test_the_bundle_loads_back_with_the_profile(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "b", profile=True)
    assert load_profile(load_bundle(bundle.path).path) is not None
