"""A registered model version read as data, without MLflow's client: what its tags mean, where
its bundle lies, and the ModelChanged event that announces it.

Shared by :mod:`inference.registry` (which talks to MLflow through its client) and the workers
(which read the registry over its REST API and must not import MLflow: it costs a worker
~116 MiB and seconds of start-up). A version is anything with MLflow's ``ModelVersion``
attributes (:class:`Version`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urlparse

from pydantic import ValidationError

from contracts import ChangeReason, ModelChanged, ReferenceProfile
from contracts.topics import SERVING_ALIAS
from inference.bundle import BundleError

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


class Version(Protocol):
    """What is read of a model version: MLflow's ``ModelVersion`` has it, and so does the
    workers' REST reading of one."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def source(self) -> str | None: ...

    @property
    def tags(self) -> Mapping[str, str]: ...


def changed_event(
    version: Version, alias: str, reason: ChangeReason = ChangeReason.ALIAS_MOVED
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


def bundle_uri(version: Version) -> str:
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
