"""The worker's REST reading of MLflow against a real server: the same version, tags and event as
MLflow's own client, bundles fetched by every address form a version can carry, verified."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from deploy.local.launcher import LocalStack
from inference import BundleError, OnnxPredictor, load_bundle
from inference.registry import SHA_TAG, register_bundle, serving_version
from inference.synthetic import make_fast_bundle
from inference.versions import changed_event
from workers.mlflow_api import MlflowApi, MlflowApiError


@pytest.fixture
def client(stack: LocalStack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


def test_the_alias_reads_as_mlflows_client_reads_it_and_its_bundle_downloads(
    stack: LocalStack, client: MlflowClient, tmp_path: Path
) -> None:
    api = MlflowApi(stack.mlflow_uri)
    name = f"test-{uuid.uuid4().hex[:8]}"
    assert api.version_by_alias(name, "production") is None  # no such model yet

    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=5, profile=True)
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    assert api.version_by_alias(name, "production") is None  # registered, not served
    client.set_registered_model_alias(name, "production", version.version)

    read = api.version_by_alias(name, "production")
    assert read is not None
    assert read.tags == client.get_model_version(name, version.version).tags
    event = changed_event(read, "production")
    theirs = serving_version(client, name, "production")
    assert theirs is not None
    assert event.model_dump(exclude={"changed_at"}) == theirs.model_dump(exclude={"changed_at"})

    local = api.download(event.artifact_uri, tmp_path / "download")
    downloaded = load_bundle(local, expected_sha256=read.tags[SHA_TAG])
    assert OnnxPredictor(downloaded).check_reference() <= 1e-6


def test_runs_and_models_addresses_resolve_to_the_artifact_proxy(
    stack: LocalStack, client: MlflowClient, tmp_path: Path
) -> None:
    api = MlflowApi(stack.mlflow_uri)
    name = f"test-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=6)
    client.log_artifacts(run.info.run_id, str(bundle.path), "bundle")  # a version before models
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    model_id = str(version.source).split("/models/")[1].split("/")[0]
    for uri in (
        f"runs:/{run.info.run_id}/bundle",
        f"models:/{model_id}/artifacts/bundle",
        f"models:/{name}/{version.version}/artifacts/bundle",
    ):
        local = api.download(uri, tmp_path / uri.replace(":", "").replace("/", "-"))
        assert load_bundle(local, expected_sha256=bundle.sha256).sha256 == bundle.sha256, uri


def test_an_address_outside_the_proxy_and_a_wrong_password_are_errors(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = MlflowApi(stack.mlflow_uri)
    for uri in ("file:///etc", "s3://bucket/bundle", "https://example.com/bundle"):
        with pytest.raises(BundleError, match="artifact proxy"):
            api.download(uri, tmp_path / "download")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(MlflowApiError) as error:  # an error, never "no such model"
        api.version_by_alias("reviewstream-sentiment", "production")
    assert error.value.status == 401


def test_proxy_addresses_map_to_the_proxy_that_serves_them() -> None:
    api = MlflowApi("https://mlflow.example:5000/")
    assert api.proxied("mlflow-artifacts:/1/models/m-1/artifacts/bundle") == (
        "https://mlflow.example:5000",
        "1/models/m-1/artifacts/bundle",
    )
    # another server's proxy, fetched only where RS_WORKER_ARTIFACT_PREFIXES allows it
    assert api.proxied("mlflow-artifacts://other:5000/2/x") == ("https://other:5000", "2/x")
    # ...never where a run or a model says it lies: the credential would go there
    with pytest.raises(BundleError, match="artifact proxy"):
        api.proxied("mlflow-artifacts://other:5000/2/x", resolved=True)
