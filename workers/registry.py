"""The MLflow model registry as a :class:`~workers.models.ModelSource`: real downloads, real
sha256 verification, a real ONNX Runtime session and the bundle's reference check.

MLflow is reached over its REST API (:mod:`workers.mlflow_api`), never through its client,
which would cost every worker ~116 MiB.

The source owns the bundle folders: it keeps the last :data:`KEPT_BUNDLES` that loaded (the one
served and the one before it), so that moving back (a rollback) reads the bundle from disk,
its sha256 checked again, instead of downloading it; older ones are deleted."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from contracts import ModelChanged
from inference import Bundle, BundleError, OnnxPredictor, ReferenceMismatch, explainer_for
from inference.bundle import load_bundle
from inference.release_rules import release_problem
from inference.versions import changed_event, check_artifact_uri
from runtime.backoff import backoff
from workers.mlflow_api import MlflowApi, MlflowApiError
from workers.models import LoadedModel, ModelRefused

log = logging.getLogger(__name__)

KEPT_BUNDLES = 2


class MlflowModelSource:
    def __init__(
        self,
        tracking_uri: str,
        *,
        cache_dir: Path | None = None,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        download_attempts: int = 3,
        artifact_prefixes: Sequence[str] = (),
    ) -> None:
        self.api = MlflowApi(tracking_uri)
        self.cache_dir = cache_dir or Path(tempfile.gettempdir())
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.download_attempts = download_attempts
        self.artifact_prefixes = tuple(artifact_prefixes)
        # sha256 -> (the folder made for it, the bundle inside), oldest first
        self._kept: OrderedDict[str, tuple[Path, Path]] = OrderedDict()

    def serving(self, name: str, alias: str) -> ModelChanged | None:
        """Where the alias points, if that version may ship: this fallback runs only while the
        models topic names nothing, and must not load what the release refused."""
        version = self.api.version_by_alias(name, alias)
        if version is None:
            return None
        problem = release_problem(version)
        if problem is not None:
            log.warning(
                "the registry names %s@%s v%s, not loaded: %s",
                name,
                alias,
                version.version,
                problem,
            )
            return None
        return changed_event(version, alias)

    def load(self, event: ModelChanged) -> LoadedModel:
        started = time.perf_counter()
        kept = self._kept.pop(event.sha256, None)
        bundle = None if kept is None else self._reuse(event, *kept)
        if kept is not None and bundle is not None:
            target = kept[0]
        else:
            target = Path(
                tempfile.mkdtemp(prefix=f"{event.model_name}-{event.version}-", dir=self.cache_dir)
            )
        timings: dict[str, float] = {}

        def took(step: str) -> None:
            nonlocal started
            now = time.perf_counter()
            timings[step], started = now - started, now

        try:
            if bundle is not None:
                took("reuse")
            else:
                bundle = self._download(event, target)
                took("download")
            try:
                predictor = OnnxPredictor(
                    bundle,
                    intra_op_threads=self.intra_op_threads,
                    inter_op_threads=self.inter_op_threads,
                )
            except Exception as exc:
                raise ModelRefused("load", f"{type(exc).__name__}: {exc}") from exc
            took("session")
            try:
                worst = predictor.check_reference()
            except ReferenceMismatch as exc:
                raise ModelRefused("reference", str(exc)) from exc
            took("reference")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        log.info(
            "version %s matches its reference outputs (max abs diff %.2g)", event.version, worst
        )
        if predictor.profile is None:
            log.warning("version %s has no reference profile: served unmonitored", event.version)
        self._keep(event.sha256, target, bundle.path)
        return LoadedModel(
            name=event.model_name,
            version=event.version,
            sha256=event.sha256,
            predictor=predictor,
            path=None,  # the folder is this source's to delete (KEPT_BUNDLES)
            explainer=explainer_for(predictor),
            timings=timings,
        )

    def _reuse(self, event: ModelChanged, folder: Path, bundle: Path) -> Bundle | None:
        """A kept bundle, if its bytes still match the event's sha256; else it is deleted and
        None (downloaded anew)."""
        try:
            return load_bundle(bundle, expected_sha256=event.sha256)
        except (BundleError, OSError) as exc:
            log.warning("the kept bundle of version %s does not check out (%s)", event.version, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def _keep(self, sha256: str, folder: Path, bundle: Path) -> None:
        self._kept[sha256] = (folder, bundle)
        while len(self._kept) > KEPT_BUNDLES:
            _, (old, _) = self._kept.popitem(last=False)
            shutil.rmtree(old, ignore_errors=True)

    def _download(self, event: ModelChanged, target: Path) -> Bundle:
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.download_attempts),
                wait=backoff(),
                retry=retry_if_not_exception_type(BundleError),
                before_sleep=before_sleep_log(log, logging.WARNING),
                reraise=True,
            ):
                with attempt:
                    return self._fetch(event, target)
        except BundleError as exc:
            raise ModelRefused("verify", str(exc)) from exc
        except (MlflowApiError, OSError) as exc:
            raise ModelRefused("download", f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, event: ModelChanged, target: Path) -> Bundle:
        """The bundle the event names, if it lies in the registry's artifact store, verified
        against the event's sha256 (a partial earlier attempt is replaced)."""
        check_artifact_uri(event.artifact_uri, self.artifact_prefixes)
        for leftover in target.iterdir():  # of an attempt that failed half-way
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        local = self.api.download(event.artifact_uri, target)
        return load_bundle(local, expected_sha256=event.sha256)
