"""Workers load the bundle inside a version's MLflow model without MLflow's pyfunc machinery."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("inference.pyfunc", "inference.mlflow_model", "mlflow.pyfunc")


def test_workers_import_neither_the_pyfunc_nor_mlflow_pyfunc() -> None:
    script = (
        "import json, sys; import workers.__main__, workers.registry, workers.service; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
