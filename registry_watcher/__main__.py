"""``python -m registry_watcher``: announce serving-alias moves on the models topic."""

from __future__ import annotations

from registry_watcher.service import Watcher
from registry_watcher.settings import Settings
from runtime.process import serve

if __name__ == "__main__":
    serve(
        lambda: Watcher(Settings()),
        name="registry_watcher",
        # A poll that fails should fail fast and be retried by the next poll, not by MLflow's
        # own long retry ladder.
        # Its bundle downloads (the release check) are logged, not drawn as progress bars.
        environ={
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        },
    )
