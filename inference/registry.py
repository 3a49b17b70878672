"""How bundles live in the MLflow model registry: the conventions export, watcher and workers share.

- A bundle is logged as an MLflow pyfunc model of its run (:mod:`inference.mlflow_model`), so
  MLflow's own tools load and serve any version; the version's ``source`` is that model, the
  tag ``bundle_path`` says where the bundle folder lies inside it, and ``bundle_sha256`` is the
  bundle's identity. Workers download only that folder.
- Versions registered before (no ``bundle_path`` tag) have the bundle folder itself as source.
- The serving alias (``production`` by default) names the version to serve. Moving it is how a
  model ships; :func:`serving_version` reads where it points as a ModelChanged event.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from contracts import ChangeReason, ModelChanged, ReferenceProfile
from contracts.topics import SERVING_ALIAS
from inference.bundle import Bundle, BundleError, load_bundle
from inference.monitoring import load_profile

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "reviewstream-sentiment"
DEFAULT_ALIAS = SERVING_ALIAS  # "production"
# The version in shadow: answers into the shadow predictions topic only, never to a client.
CHALLENGER_ALIAS = "challenger"
SHA_TAG = "bundle_sha256"
BUNDLE_PATH_TAG = "bundle_path"
PROFILE_TAG = "reference_profile"
# What MLflow answers when the model or its alias does not exist. With sign-in on, a user who is
# not an admin is told 403 about a model that does not exist (MLflow does not say whether it
# exists to whom it might hide it); every role of deploy/mlflow_access.py reads every model, so
# there 403 means "no such model yet". A wrong password is 401, and still an error.
ABSENT = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED"})
# URIs that MLflow resolves through the configured tracking server, never another host: an
# event naming a file, an http(s) address or mlflow-artifacts://other-host is not fetched.
REGISTRY_SCHEMES = frozenset({"models", "runs", "mlflow-artifacts"})


def register_bundle(
    client: MlflowClient, *, run_id: str, bundle: Bundle, model_name: str
) -> ModelVersion:
    """Log the bundle as an MLflow model of the run and register it as a new version of
    ``model_name``."""
    # Imported here: workers import this module, and must not load MLflow's pyfunc and pandas.
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


def changed_event(
    version: ModelVersion, alias: str, reason: ChangeReason = ChangeReason.ALIAS_MOVED
) -> ModelChanged:
    return ModelChanged(
        model_name=version.name,
        version=str(version.version),
        alias=alias,
        artifact_uri=bundle_uri(version),
        sha256=version.tags[SHA_TAG],
        reason=reason,
        profile=_profile(version.tags.get(PROFILE_TAG)),
    )


def bundle_uri(version: ModelVersion) -> str:
    """The bundle folder of a version: inside its MLflow model, or (registered before versions
    were MLflow models) the source itself."""
    inside = version.tags.get(BUNDLE_PATH_TAG)
    source = str(version.source)
    return f"{source.rstrip('/')}/{inside.strip('/')}" if inside else source


def _profile(tag: str | None) -> ReferenceProfile | None:
    """A broken tag must not stop the version from shipping: it is served unmonitored."""
    if tag is None:
        return None
    try:
        return ReferenceProfile.model_validate_json(tag)
    except ValidationError as exc:
        log.warning("ignoring the version's %s tag: %s", PROFILE_TAG, exc)
        return None


def serving_version(client: MlflowClient, model_name: str, alias: str) -> ModelChanged | None:
    """Where the alias points now, or None if the model or the alias does not exist yet."""
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ABSENT:
            return None
        raise
    return changed_event(version, alias)


def check_artifact_uri(uri: str, allowed_prefixes: Sequence[str] = ()) -> None:
    """Refuse a bundle address outside the configured registry's artifact store.

    ``allowed_prefixes`` adds the store a tracking server hands out directly (e.g.
    ``s3://bucket/mlflow/`` when it does not proxy artifacts).
    """
    parsed = urlparse(uri)
    if parsed.scheme in REGISTRY_SCHEMES and not parsed.netloc and ".." not in uri.split("/"):
        return
    if any(uri.startswith(prefix) for prefix in allowed_prefixes if prefix):
        return
    raise BundleError(
        f"artifact_uri {uri!r} is not in the registry's artifact store "
        f"({', '.join(sorted(REGISTRY_SCHEMES))} URIs, or a configured prefix)"
    )


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
