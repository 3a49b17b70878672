"""The few calls a worker makes to MLflow, over its REST API: no MLflow client in a worker.

Importing MLflow's client costs a worker ~116 MiB and seconds of start-up (pandas, pyarrow and
scipy come with it) for three things: where an alias points, with the version's tags
(``registered-models/alias``); where a ``runs:/`` or ``models:/`` address lies; and the files of
a bundle folder, through the tracking server's artifact proxy (``mlflow-artifacts``, which
every deployment here runs: ``mlflow server --serve-artifacts``).

Each request carries this process's MLflow credential (:mod:`runtime.mlflow_credentials`, read
again per request: a rotated password file is picked up) and follows no redirect, so the
credential never leaves the tracking server. Errors::

    MlflowApiError   MLflow answered with an error (``status``, ``error_code``)
    OSError          no answer: connection refused, timeout (``urllib.error.URLError``)
    BundleError      the address lies outside the artifact proxy: nothing here can fetch it
"""

from __future__ import annotations

import json
import logging
import posixpath
import shutil
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote, urlencode, urlparse
from urllib.request import HTTPRedirectHandler, OpenerDirector, Request, build_opener

from inference.bundle import BundleError
from inference.versions import ABSENT
from runtime.mlflow_credentials import basic_auth_header

log = logging.getLogger(__name__)

ARTIFACTS = "api/2.0/mlflow-artifacts/artifacts"
CHUNK = 1 << 20
MAX_DEPTH = 8  # a bundle folder is flat; a deeper tree is not one


class MlflowApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version as the REST API describes it (an :class:`inference.versions.Version`)."""

    name: str
    version: str
    source: str | None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegisteredVersion:
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            source=data.get("source"),
            tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
        )


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx becomes an HTTPError: the credential stays with the tracking server


class MlflowApi:
    def __init__(self, tracking_uri: str, *, timeout_s: float = 20.0) -> None:
        self.base = tracking_uri.rstrip("/")
        self.timeout_s = timeout_s
        self._opener: OpenerDirector = build_opener(_NoRedirect)

    # -- the registry ---------------------------------------------------------------------

    def version_by_alias(self, name: str, alias: str) -> RegisteredVersion | None:
        """The version the alias names, or None if the model or the alias does not exist."""
        try:
            answer = self._json(
                "api/2.0/mlflow/registered-models/alias", {"name": name, "alias": alias}
            )
        except MlflowApiError as exc:
            if exc.error_code in ABSENT:
                return None
            raise
        return RegisteredVersion.from_json(answer["model_version"])

    # -- artifacts --------------------------------------------------------------------------

    def download(self, uri: str, destination: Path) -> Path:
        """Fetch the folder (or file) at ``uri`` into ``destination``; return its local path,
        ``destination / <its last name>``, as MLflow's ``download_artifacts`` does."""
        base, path = self.proxied(uri)
        local = destination / posixpath.basename(path.rstrip("/"))
        destination.mkdir(parents=True, exist_ok=True)
        self._fetch(base, path.rstrip("/"), local, depth=0)
        return local

    def proxied(self, uri: str, *, resolved: bool = False) -> tuple[str, str]:
        """(the server's URL, the path under its artifact proxy) of an artifact address.

        Another server's proxy (``mlflow-artifacts://host/``) only as the event's own address,
        which a configured prefix allowed; never as where a run or model says it lies (an
        experiment's artifact location is whatever its creator chose): the credential goes
        to no host nobody configured."""
        parsed = urlparse(uri)
        inner = parsed.path.lstrip("/")
        if parsed.scheme == "mlflow-artifacts" and not parsed.netloc:
            return self.base, inner
        if parsed.scheme == "mlflow-artifacts" and not resolved:
            scheme = urlparse(self.base).scheme or "http"
            return f"{scheme}://{parsed.netloc}", inner
        if parsed.scheme == "runs" and not parsed.netloc and not resolved:
            run_id, _, rest = inner.partition("/")
            run = self._json("api/2.0/mlflow/runs/get", {"run_id": run_id})
            return self.proxied(_join(run["run"]["info"]["artifact_uri"], rest), resolved=True)
        if parsed.scheme == "models" and not parsed.netloc and not resolved:
            return self.proxied(self._model_location(inner), resolved=True)
        raise BundleError(
            f"{uri!r} is not served by the tracking server's artifact proxy "
            "(mlflow-artifacts:/): a worker fetches bundles only through it"
        )

    def _model_location(self, inner: str) -> str:
        """``models:/m-<id>[/path]`` (a logged model) or ``models:/<name>/<version>``."""
        first, _, rest = inner.partition("/")
        if first.startswith("m-"):
            model = self._json(f"api/2.0/mlflow/logged-models/{quote(first)}")
            return _join(model["model"]["info"]["artifact_uri"], rest)
        version, _, rest = rest.partition("/")
        answer = self._json(
            "api/2.0/mlflow/model-versions/get-download-uri", {"name": first, "version": version}
        )
        return _join(answer["artifact_uri"], rest)

    def _fetch(self, base: str, path: str, local: Path, *, depth: int) -> None:
        listing = self._json(ARTIFACTS, {"path": path}, base=base).get("files", [])
        if not listing:  # a file (a folder would list its files)
            self._save(base, path, local)
            return
        if depth >= MAX_DEPTH:
            raise BundleError(f"{path!r} nests folders deeper than {MAX_DEPTH}")
        local.mkdir(parents=True, exist_ok=True)
        for entry in listing:
            name = str(entry["path"])
            if name in {"", ".", ".."} or "/" in name or "\\" in name:
                raise BundleError(f"the artifact store lists {name!r} under {path!r}")
            child = local / name
            if entry.get("is_dir"):
                self._fetch(base, f"{path}/{name}", child, depth=depth + 1)
            else:
                self._save(base, f"{path}/{name}", child)

    def _save(self, base: str, path: str, local: Path) -> None:
        """One file, streamed to disk in chunks (a model is tens of MiB: never all in memory)."""
        with self._open(f"{ARTIFACTS}/{quote(path)}", base=base) as answer, local.open("wb") as out:
            shutil.copyfileobj(answer, out, CHUNK)

    # -- HTTP -------------------------------------------------------------------------------

    def _json(
        self, path: str, params: dict[str, str] | None = None, *, base: str | None = None
    ) -> dict[str, Any]:
        with self._open(path, params, base=base) as answer:
            data = json.load(answer)
        if not isinstance(data, dict):
            raise MlflowApiError(200, "BAD_RESPONSE", f"{path} answered {type(data).__name__}")
        return data

    def _open(
        self, path: str, params: dict[str, str] | None = None, *, base: str | None = None
    ) -> HTTPResponse:
        url = f"{base or self.base}/{path}"
        if params:
            url = f"{url}?{urlencode(params)}"
        request = Request(url, headers=basic_auth_header())  # noqa: S310 (http(s) of the tracking URI)
        try:
            answer: HTTPResponse = self._opener.open(request, timeout=self.timeout_s)
        except HTTPError as exc:
            raise _error(exc) from None
        return answer


def _join(root: str, rest: str) -> str:
    return f"{root.rstrip('/')}/{rest.strip('/')}" if rest.strip("/") else root


def _error(exc: HTTPError) -> MlflowApiError:
    """MLflow's error body (``error_code``, ``message``), or the status line when it has none."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return MlflowApiError(
        exc.code, str(body.get("error_code", "HTTP_ERROR")), str(body.get("message", exc.reason))
    )
