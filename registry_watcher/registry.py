"""The MLflow model registry, as the watcher sees it: where does an alias point now?"""

from __future__ import annotations

from typing import Protocol

from mlflow import MlflowClient

from contracts import ModelChanged
from inference.registry import serving_version


class Registry(Protocol):
    def serving(self, name: str, alias: str) -> ModelChanged | None:
        """Where the alias points (blocking); raises while the registry is unreachable."""
        ...


class MlflowRegistry:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def serving(self, name: str, alias: str) -> ModelChanged | None:
        return serving_version(self.client, name, alias)
