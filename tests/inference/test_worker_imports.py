"""Workers load the bundle inside a version's MLflow model without MLflow at all: they read the
registry over its REST API (workers.mlflow_api), and MLflow's client would cost each ~116 MiB."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("inference.pyfunc", "inference.mlflow_model", "mlflow", "pandas", "pyarrow", "scipy")


def test_workers_import_no_mlflow_and_none_of_what_it_brings() -> None:
    script = (
        "import json, sys; import workers.__main__, workers.registry, workers.service; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
