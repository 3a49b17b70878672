"""Bundles round-trip through a real MLflow server and registry."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from contracts import ModelChanged
from deploy.local.launcher import LocalStack
from inference import BundleError, OnnxPredictor
from inference.registry import (
    BUNDLE_PATH_TAG,
    PROFILE_TAG,
    SHA_TAG,
    changed_event,
    check_artifact_uri,
    download_bundle,
    register_bundle,
    serving_version,
)
from inference.synthetic import make_fast_bundle


@pytest.fixture
def client(stack: LocalStack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


def test_register_alias_download_and_verify(client: MlflowClient, tmp_path: Path) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    assert serving_version(client, name, "production") is None

    experiment = client.create_experiment(name)
    run = client.create_run(experiment)
    bundle = make_fast_bundle(tmp_path / "bundle", seed=3)
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    assert serving_version(client, name, "production") is None  # registered, not served

    client.set_registered_model_alias(name, "production", version.version)
    event = serving_version(client, name, "production")
    assert event is not None
    assert event.version == str(version.version)
    assert event.sha256 == bundle.sha256

    downloaded = download_bundle(event, tmp_path / "download")
    assert downloaded.sha256 == bundle.sha256
    assert OnnxPredictor(downloaded).check_reference() <= 1e-6

    tampered = event.model_copy(update={"sha256": "f" * 64})
    with pytest.raises(BundleError, match="expected"):
        download_bundle(tampered, tmp_path / "again")


def test_a_versions_reference_profile_travels_with_its_event(
    client: MlflowClient, tmp_path: Path
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=3, profile=True)
    profiled = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    client.set_registered_model_alias(name, "production", profiled.version)
    event = serving_version(client, name, "production")
    assert event is not None
    profile = OnnxPredictor(bundle).profile
    assert profile is not None
    assert event.profile == profile.summary()

    # A version registered before profiles existed: announced, served unmonitored.
    old = make_fast_bundle(tmp_path / "old", seed=4)
    unprofiled = register_bundle(client, run_id=run.info.run_id, bundle=old, model_name=name)
    client.set_registered_model_alias(name, "production", unprofiled.version)
    event = serving_version(client, name, "production")
    assert event is not None
    assert event.profile is None
    # A broken tag does not stop it either.
    client.set_model_version_tag(name, str(unprofiled.version), PROFILE_TAG, "{not json")
    assert serving_version(client, name, "production") is not None


def test_the_event_names_the_bundle_inside_the_mlflow_model(
    client: MlflowClient, tmp_path: Path
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=3)
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    assert version.tags[BUNDLE_PATH_TAG] == "artifacts/bundle"  # MLflow's place for artifacts

    event = changed_event(version, "production")
    assert event.artifact_uri == f"{version.source}/artifacts/bundle"
    assert download_bundle(event, tmp_path / "download").sha256 == bundle.sha256


def test_a_version_registered_before_mlflow_models_still_serves(
    client: MlflowClient, tmp_path: Path
) -> None:
    """Older versions' source is the bundle folder itself, with no bundle_path tag."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=4)
    client.log_artifacts(run.info.run_id, str(bundle.path), "bundle")
    client.create_registered_model(name)
    old = client.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/bundle",
        run_id=run.info.run_id,
        tags={SHA_TAG: bundle.sha256},
    )
    client.set_registered_model_alias(name, "production", old.version)

    event = serving_version(client, name, "production")
    assert event is not None
    assert event.artifact_uri == old.source
    downloaded = download_bundle(event, tmp_path / "download")
    assert OnnxPredictor(downloaded).check_reference() <= 1e-6


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc",
        "/etc",
        "https://evil.example/bundle",
        "mlflow-artifacts://evil.example:5000/1/models/m-1/artifacts/bundle",
        "s3://someone-elses-bucket/bundle",
        "mlflow-artifacts:/1/../../../etc",
    ],
)
def test_a_bundle_outside_the_registry_is_not_fetched(uri: str, tmp_path: Path) -> None:
    event = ModelChanged(
        model_name="m", version="1", alias="production", artifact_uri=uri, sha256="0" * 64
    )
    with pytest.raises(BundleError, match="is not in the registry's artifact store"):
        download_bundle(event, tmp_path / "download")
    assert not (tmp_path / "download").exists()


def test_the_registry_schemes_and_configured_prefixes_are_fetched() -> None:
    for uri in ("models:/m-123/artifacts/bundle", "runs:/abc/bundle", "mlflow-artifacts:/1/x"):
        check_artifact_uri(uri)
    check_artifact_uri("s3://ours/mlflow/1/x", allowed_prefixes=["s3://ours/mlflow/"])
    with pytest.raises(BundleError):
        check_artifact_uri("s3://ours/other/1/x", allowed_prefixes=["s3://ours/mlflow/"])
