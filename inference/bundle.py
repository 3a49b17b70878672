"""A model bundle: one folder that holds everything needed to serve a model version.

::

    bundle/
      bundle.json      manifest: format, family, preprocessing, inputs/output, sha256 of every file
      model.onnx       the graph (outputs the positive-class probability, float32 [batch])
      model.onnx.data  its large weights, which ONNX Runtime maps instead of copying
                       (``inference.onnx_weights``; bundles written before hold them inline)
      reference.json   texts with the probabilities recorded at export time
      tokenizer.json   (wordpiece models only)

The bundle's identity is the sha256 of ``bundle.json``: since the manifest lists the digest of
every other file, checking it and then each file verifies the whole bundle.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "bundle.json"
MODEL_FILE = "model.onnx"
REFERENCE_FILE = "reference.json"
WEIGHTS_FILE = "model.onnx.data"  # the name model.onnx gives its weights' file


class BundleError(Exception):
    """A bundle that must not be served: missing files, wrong digest, unknown format."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    sha256: str

    @property
    def family(self) -> str:
        return str(self.manifest["family"])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.manifest["preprocessing"])

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    def reference(self) -> dict[str, Any]:
        return dict(json.loads((self.path / REFERENCE_FILE).read_text()))


def write_bundle(
    path: Path,
    *,
    model_file: Path,
    family: str,
    preprocessing: dict[str, Any],
    reference_texts: list[str],
    reference_probabilities: list[float],
    extra_files: Sequence[Path] = (),
    tolerance: float = 1e-4,
    metadata: dict[str, Any] | None = None,
) -> Bundle:
    """Write a bundle folder (replacing any previous one) and return it, verified."""
    if len(reference_texts) != len(reference_probabilities):
        raise ValueError("one reference probability per reference text")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    shutil.copyfile(model_file, path / MODEL_FILE)
    for extra in extra_files:
        shutil.copyfile(extra, path / extra.name)
    (path / REFERENCE_FILE).write_text(
        json.dumps(
            {
                "texts": reference_texts,
                "probabilities": reference_probabilities,
                "tolerance": tolerance,
            },
            indent=1,
        )
    )
    files = sorted(p for p in path.iterdir() if p.name != MANIFEST)
    manifest = {
        "format_version": FORMAT_VERSION,
        "family": family,
        "preprocessing": preprocessing,
        "output": "probability",
        "files": {p.name: sha256_file(p) for p in files},
        "metadata": metadata or {},
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return load_bundle(path)


def bundle_file(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it stays inside ``folder``: a manifest names its
    files, and ``../`` or an absolute path there would read any file the worker can read."""
    file = (folder / name).resolve()
    if not file.is_relative_to(folder.resolve()):
        raise BundleError(f"bundle file {name!r} is outside the bundle folder")
    return file


def load_bundle(path: Path, expected_sha256: str | None = None) -> Bundle:
    """Read and verify a bundle; raise BundleError if anything does not match."""
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise BundleError(f"{path} has no {MANIFEST}")
    digest = sha256_file(manifest_file)
    if expected_sha256 is not None and digest != expected_sha256:
        raise BundleError(f"bundle sha256 is {digest}, expected {expected_sha256}")
    try:
        manifest = json.loads(manifest_file.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{MANIFEST} is not JSON: {exc}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"unsupported bundle format {manifest.get('format_version')!r}")
    files = manifest.get("files", {})
    for name, expected in files.items():
        file = bundle_file(path, name)
        if not file.is_file():
            raise BundleError(f"bundle file {name} is missing")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(f"bundle file {name} has sha256 {actual}, expected {expected}")
    for required in (MODEL_FILE, REFERENCE_FILE):
        if required not in files:
            raise BundleError(f"bundle has no {required}")
    tokenizer = manifest.get("preprocessing", {}).get("tokenizer")
    if tokenizer is not None and tokenizer not in files:
        # every file the model reads is one whose digest was just checked
        raise BundleError(f"the tokenizer {tokenizer!r} is not among the bundle's files")
    return Bundle(path=path, manifest=manifest, sha256=digest)
