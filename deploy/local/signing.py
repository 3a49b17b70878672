"""The local stack's models-topic key pair (``runtime.signing``), made at first start.

It lives in the state folder (the private key readable by its owner only): the registry watcher
signs with it, and every reader of the models topic trusts only it, as in compose and
Kubernetes.
"""

from __future__ import annotations

from pathlib import Path

from deploy.local.settings import StackSettings
from runtime.signing import new_key_pair

SIGNER = "registry_watcher"


def signing_keys(settings: StackSettings) -> tuple[Path, Path]:
    """The private and public key files, made when missing."""
    folder = (settings.state_dir / "secrets").resolve()
    private, public = folder / "models-signing.pem", folder / "models-signing.pub"
    if not private.exists():
        new_key_pair(private, public)
    return private, public


def signing_env(settings: StackSettings, process: str) -> dict[str, str]:
    """What ``process`` is told: the public key for all; the private key for the signer."""
    private, public = signing_keys(settings)
    env = {"RS_MODELS_VERIFY_KEY_FILES": str(public)}
    if process == SIGNER:
        env["RS_MODELS_SIGNING_KEY_FILE"] = str(private)
    return env
