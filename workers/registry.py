"""The MLflow model registry as a :class:`~workers.models.ModelSource`: real downloads, real
sha256 verification, a real ONNX Runtime session and the bundle's reference check.

MLflow is reached over its REST API (:mod:`workers.mlflow_api`), never through its client,
which would cost every worker ~116 MiB.

The source owns the bundle folders: it keeps the last :data:`KEPT_BUNDLES` that loaded (the one
served and the one before it), so that moving back (a rollback) reads the bundle from disk
instead of downloading it; older ones are deleted. Beside them it keeps one bundle fetched
ahead (:meth:`MlflowModelSource.prefetch`: the next version the watcher announced), with its
ONNX Runtime session built ahead too: that costs ~0.5 MiB, since the weights file is mapped and
not read until the reference check, which still runs at the move, before the swap (and faults
the weights in then). A load is staged (:meth:`MlflowModelSource.stage`: all but the check) so
that the slot runs the check between batches, after :meth:`MlflowModelSource.drop_pages` took
the served version's weights out of memory (``inference.mapped_pages``). A load and a prefetch
of the same bundle never download it twice: the second waits for the first.

A bundle on disk is trusted again only if not one of its files was written since its sha256
was verified (:class:`OnDisk`): the inode, size, mtime and ctime of every file are taken before
the hash, and compared when the bundle is used again. Any write or ``utime`` changes a file's
ctime, which no process can set back, so equal fingerprints mean the bytes hashed are the bytes
on disk, without hashing tens of MB again on the path of a hot reload. A bundle whose files
changed is hashed again in full (and downloaded anew if it no longer matches)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from contracts import ModelChanged
from inference import Bundle, BundleError, OnnxPredictor, ReferenceMismatch, explainer_for
from inference.bundle import WEIGHTS_FILE, load_bundle
from inference.mapped_pages import drop_pages
from inference.release_rules import release_problem
from inference.versions import changed_event, check_artifact_uri
from runtime.backoff import backoff
from runtime.heap import trim
from workers.mlflow_api import MlflowApi, MlflowApiError
from workers.models import LoadedModel, ModelRefused

log = logging.getLogger(__name__)

KEPT_BUNDLES = 2

Fingerprint = Mapping[str, tuple[int, int, int, int]]


def fingerprint(path: Path) -> Fingerprint:
    """Inode, size, mtime and ctime (ns) of every file under ``path``, by relative name."""
    found = {}
    for file in sorted(path.rglob("*")):
        if file.is_file():
            st = file.stat()
            found[str(file.relative_to(path))] = (
                st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
            )  # fmt: skip
    return found


@dataclass(frozen=True)
class OnDisk:
    """A bundle in this source's cache, as verified: its folder, and its files' fingerprint
    taken just before they were hashed."""

    folder: Path
    bundle: Bundle
    files: Fingerprint

    def unchanged(self) -> bool:
        return fingerprint(self.bundle.path) == self.files


class Staged:
    """A version downloaded, verified and in an ONNX Runtime session, its reference check
    still to run: :meth:`check` (the slot runs it between batches) or :meth:`discard`."""

    def __init__(self, source: MlflowModelSource, event: ModelChanged) -> None:
        self.source = source
        self.event = event
        self.target: Path | None = None  # its folder, deleted if it is not served
        self.on_disk: OnDisk | None = None
        self.predictor: OnnxPredictor | None = None
        self.timings: dict[str, float] = {}  # seconds per step, in the order they ran
        self._started = time.perf_counter()
        self._done = False

    def took(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[step], self._started = now - self._started, now

    def check(self, served: LoadedModel | None) -> LoadedModel:
        """Drop the served version's weights pages (nothing reads them meanwhile: the caller
        holds the batches back), then run the reference check (faulting the new weights in);
        raise ModelRefused. Blocking."""
        assert self.predictor is not None, "check a staged load"
        assert self.on_disk is not None, "check a staged load"
        self._done = True
        self._started = time.perf_counter()
        try:
            dropped = 0
            if served is not None:
                dropped = self.source.drop_pages(served)
                self.took("drop served pages")
            try:
                worst = self.predictor.check_reference()
            except ReferenceMismatch as exc:
                raise ModelRefused("reference", str(exc)) from exc
            self.took("reference")
        except BaseException:
            self.source._unstaged(self)
            raise
        event = self.event
        log.info(
            "version %s matches its reference outputs (max abs diff %.2g; %.1f MiB of the "
            "served version's weights dropped from memory first)",
            event.version, worst, dropped / 2**20,
        )  # fmt: skip
        if self.predictor.profile is None:
            log.warning("version %s has no reference profile: served unmonitored", event.version)
        self.source._checked(self, self.on_disk)
        return LoadedModel(
            name=event.model_name,
            version=event.version,
            sha256=event.sha256,
            predictor=self.predictor,
            path=None,  # the folder is this source's to delete (KEPT_BUNDLES)
            explainer=explainer_for(self.predictor),
            timings=self.timings,
        )

    def discard(self) -> None:
        """Not checked, not served: its folder goes (once; a checked one is the source's)."""
        if not self._done:
            self._done = True
            self.source._unstaged(self)


def verified(folder: Path, path: Path, sha256: str) -> OnDisk:
    """The bundle at ``path`` checked against ``sha256`` (raises BundleError), fingerprinted."""
    files = fingerprint(path)
    return OnDisk(folder, load_bundle(path, expected_sha256=sha256), files)


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
        # sha256 -> the bundle loaded, oldest first; and the one fetched ahead
        self._kept: OrderedDict[str, OnDisk] = OrderedDict()
        self._ahead: OnDisk | None = None
        self._ahead_session: OnnxPredictor | None = None  # its session, built ahead
        self._staged: dict[str, OnDisk] = {}  # sha256 -> staged, not yet checked
        self._lock = threading.Lock()  # guards the three above and _fetching
        self._fetching: dict[str, threading.Lock] = {}  # one download per sha256 at a time

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

    def prefetch(self, event: ModelChanged) -> bool:
        """Download and verify the bundle of a version that may be served next, without
        loading it (blocking); False when it is on disk already. Raises ModelRefused."""
        with self._fetching_lock(event.sha256):
            with self._lock:
                ahead = self._ahead is not None and self._ahead.bundle.sha256 == event.sha256
                if event.sha256 in self._kept or event.sha256 in self._staged or ahead:
                    return False
            target = self._folder(event)
            try:
                fetched = self._download(event, target)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            session = self._session_ahead(fetched.bundle)
            with self._lock:
                before, self._ahead = self._ahead, fetched
                self._ahead_session = session
        if before is not None:
            shutil.rmtree(before.folder, ignore_errors=True)
        return True

    def load(self, event: ModelChanged) -> LoadedModel:
        """Stage and check a version at once (nothing served to make room for)."""
        return self.stage(event).check(None)

    def stage(self, event: ModelChanged) -> Staged:
        """Download (or reuse) and verify a version's bundle and build its session, short of
        the reference check (blocking); raise ModelRefused."""
        with self._fetching_lock(event.sha256):
            return self._stage(event)

    def _stage(self, event: ModelChanged) -> Staged:
        staged = Staged(self, event)
        with self._lock:
            kept = self._kept.pop(event.sha256, None)
            reused, session = "reuse", None
            if (
                kept is None
                and self._ahead is not None
                and self._ahead.bundle.sha256 == event.sha256
            ):
                kept, self._ahead, reused = self._ahead, None, "prefetched"
                session, self._ahead_session = self._ahead_session, None
        on_disk = None if kept is None else self._reuse(event, kept)
        if on_disk is not kept:
            session = None  # its files changed since: built again from what was re-checked
        staged.target = on_disk.folder if on_disk is not None else self._folder(event)
        try:
            if on_disk is not None:
                staged.took(reused)
            else:
                on_disk = self._download(event, staged.target)
                staged.took("download")
            staged.on_disk = on_disk
            try:
                staged.predictor = session or self._session(on_disk.bundle)
            except Exception as exc:
                raise ModelRefused("load", f"{type(exc).__name__}: {exc}") from exc
            staged.took("session ahead" if staged.predictor is session else "session")
        except BaseException:
            staged.discard()
            raise
        with self._lock:
            self._staged[event.sha256] = on_disk
        trim()  # what building the session freed, before the check adds to what is resident
        return staged

    def drop_pages(self, served: LoadedModel) -> int:
        """Take the served version's weights out of this process's memory (their pages come
        back from the file if it is read again); only if its bundle, kept here, is unchanged
        since verified. Returns the bytes that were resident."""
        with self._lock:  # staged, if the new version has the same bundle (its mapping, unread)
            kept = self._kept.get(served.sha256) or self._staged.get(served.sha256)
        if kept is None or not kept.unchanged():
            return 0
        weights = kept.bundle.path / WEIGHTS_FILE
        return drop_pages(weights) if weights.exists() else 0

    def _checked(self, staged: Staged, on_disk: OnDisk) -> None:
        with self._lock:
            self._staged.pop(staged.event.sha256, None)
        self._keep(staged.event.sha256, on_disk)

    def _unstaged(self, staged: Staged) -> None:
        with self._lock:
            self._staged.pop(staged.event.sha256, None)
        if staged.target is not None:
            shutil.rmtree(staged.target, ignore_errors=True)

    def _session(self, bundle: Bundle) -> OnnxPredictor:
        return OnnxPredictor(
            bundle, intra_op_threads=self.intra_op_threads, inter_op_threads=self.inter_op_threads
        )

    def _session_ahead(self, bundle: Bundle) -> OnnxPredictor | None:
        """The session of a bundle fetched ahead, or None if it does not build (the move builds
        it again, and reports why it fails)."""
        try:
            return self._session(bundle)
        except Exception as exc:
            log.warning("could not build the session of %s ahead: %r", bundle.path, exc)
            return None

    def _reuse(self, event: ModelChanged, kept: OnDisk) -> OnDisk | None:
        """A bundle on disk, if not a byte of it was written since it was verified, or if its
        bytes still match the event's sha256; else it is deleted and None (downloaded anew)."""
        try:
            if kept.bundle.sha256 == event.sha256 and kept.unchanged():
                return kept
            log.warning("the bundle of version %s changed on disk: hashing it again", event.version)
            return verified(kept.folder, kept.bundle.path, event.sha256)
        except (BundleError, OSError) as exc:
            log.warning("the kept bundle of version %s does not check out (%s)", event.version, exc)
            shutil.rmtree(kept.folder, ignore_errors=True)
            return None

    def _keep(self, sha256: str, on_disk: OnDisk) -> None:
        with self._lock:
            self._kept[sha256] = on_disk
            while len(self._kept) > KEPT_BUNDLES:
                _, old = self._kept.popitem(last=False)
                shutil.rmtree(old.folder, ignore_errors=True)

    def _fetching_lock(self, sha256: str) -> threading.Lock:
        with self._lock:
            return self._fetching.setdefault(sha256, threading.Lock())

    def _folder(self, event: ModelChanged) -> Path:
        return Path(
            tempfile.mkdtemp(prefix=f"{event.model_name}-{event.version}-", dir=self.cache_dir)
        )

    def _download(self, event: ModelChanged, target: Path) -> OnDisk:
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

    def _fetch(self, event: ModelChanged, target: Path) -> OnDisk:
        """The bundle the event names, if it lies in the registry's artifact store, verified
        against the event's sha256 (a partial earlier attempt is replaced)."""
        check_artifact_uri(event.artifact_uri, self.artifact_prefixes)
        for leftover in target.iterdir():  # of an attempt that failed half-way
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        local = self.api.download(event.artifact_uri, target)
        return verified(target, local, event.sha256)
