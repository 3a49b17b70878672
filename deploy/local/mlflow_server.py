"""The MLflow tracking server: a SQLite store and an artifact folder, under the state folder.

Kept light for two cores: one worker, no background job runner, no access log.
Run alone with ``python -m deploy.local.mlflow_server``.
"""

from __future__ import annotations

import os
import sys

from deploy.local.settings import StackSettings


def command(settings: StackSettings) -> list[str]:
    state = (settings.state_dir / "mlflow").resolve()
    state.mkdir(parents=True, exist_ok=True)
    host, port = settings.mlflow_address
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
        "--artifacts-destination", str(state / "artifacts"),
        "--serve-artifacts",
        "--host", host,
        "--port", str(port),
        "--workers", "1",
        # The workers and the watcher ask the registry every few seconds: no line per request.
        "--uvicorn-opts", "--no-access-log",
    ]  # fmt: skip


# MLflow's server imports a Starlette module that Starlette marks as deprecated: MLflow's to fix,
# and nothing a user of the stack can act on, so it stays out of the start-up screen.
QUIET_WARNINGS = "ignore:starlette.middleware.wsgi is deprecated"


def main() -> None:
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    given = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{given},{QUIET_WARNINGS}" if given else QUIET_WARNINGS
    argv = command(StackSettings())
    os.execv(argv[0], argv)  # noqa: S606 - become the server, so signals reach it directly


if __name__ == "__main__":
    main()
