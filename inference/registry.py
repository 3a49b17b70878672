"""How bundles live in the MLflow model registry, through MLflow's client (export, watcher).

- A bundle is logged as an MLflow pyfunc model of its run (:mod:`inference.mlflow_model`), so
  MLflow's own tools load and serve any version; the version's ``source`` is that model, the
  tag ``bundle_path`` says where the bundle folder lies inside it, and ``bundle_sha256`` is the
  bundle's identity. Workers download only that folder.
- Versions registered before (no ``bundle_path`` tag) have the bundle folder itself as source.
- The serving alias (``production`` by default) names the version to serve. Moving it is how a
  model ships; :func:`serving_version` reads where it points as a ModelChanged event.

What a version's fields mean lives in :mod:`inference.versions`, which imports no MLflow: the
workers read the registry over its REST API (``workers.mlflow_api``) with the same rules.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from contracts import ModelChanged
from inference.bundle import Bundle, load_bundle
from inference.monitoring import load_profile

# The conventions themselves (read without MLflow's client, as workers do), named here too.
from inference.versions import ABSENT as ABSENT
from inference.versions import BUNDLE_PATH_TAG as BUNDLE_PATH_TAG
from inference.versions import CHALLENGER_ALIAS as CHALLENGER_ALIAS
from inference.versions import DEFAULT_ALIAS as DEFAULT_ALIAS
from inference.versions import DEFAULT_MODEL_NAME as DEFAULT_MODEL_NAME
from inference.versions import PROFILE_TAG as PROFILE_TAG
from inference.versions import REGISTRY_SCHEMES as REGISTRY_SCHEMES
from inference.versions import SHA_TAG as SHA_TAG
from inference.versions import bundle_uri as bundle_uri
from inference.versions import changed_event as changed_event
from inference.versions import check_artifact_uri as check_artifact_uri

log = logging.getLogger(__name__)


def register_bundle(
    client: MlflowClient, *, run_id: str, bundle: Bundle, model_name: str
) -> ModelVersion:
    """Log the bundle as an MLflow model of the run and register it as a new version of
    ``model_name``."""
    # Imported here: the watcher and export import this module, and need no pyfunc or pandas.
    from inference.mlflow_model import log_bundle_model

    logged = log_bundle_model(client, run_id=run_id, bundle=bundle)
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name)
    tags = {SHA_TAG: bundle.sha256, BUNDLE_PATH_TAG: logged.bundle_path}
    profile = load_profile(bundle.path)
    if profile is not None:  # read by the watcher, announced to the drift monitor
        tags[PROFILE_TAG] = profile.summary().model_dump_json()
    return client.create_model_version(
        model_name, source=logged.source, run_id=run_id, tags=tags, model_id=logged.model_id
    )


def serving_version(client: MlflowClient, model_name: str, alias: str) -> ModelChanged | None:
    """Where the alias points now, or None if the model or the alias does not exist yet."""
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ABSENT:
            return None
        raise
    return changed_event(version, alias)


def download_bundle(
    event: ModelChanged, destination: Path | None = None, allowed_prefixes: Sequence[str] = ()
) -> Bundle:
    """Fetch the bundle an event names, if it lies in the registry's artifact store, and verify
    it against the event's sha256."""
    check_artifact_uri(event.artifact_uri, allowed_prefixes)
    target = destination or Path(tempfile.mkdtemp(prefix=f"bundle-{event.version}-"))
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=event.artifact_uri, dst_path=str(target)
    )
    return load_bundle(Path(local), expected_sha256=event.sha256)
