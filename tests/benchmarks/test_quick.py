"""``python -m benchmarks --quick`` runs every scenario and saves finite figures (not speed).

The CLI runs as a subprocess: importing mlflow.pyfunc here would trip the warnings filter.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.launcher import ROOT, LocalStack

SCENARIO_PREFIXES = {
    "limit": "1 limit",
    "streaming": "2 Kafka burst",
    "rest": "3 ",
    "mlflow": "4 mlflow models serve",
    "reload": "5 hot reload",
    "memory": "6 peak RSS",
    "explain": "7 explain",
    "stats": "8 stats path",
    "soak": "9 soak",
}


def test_quick_benchmark_saves_every_scenario_with_finite_figures(
    stack: LocalStack, tmp_path: Path
) -> None:
    output = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "benchmarks", "--quick", "--no-own-stack",
        "--repeats", "1", "--requests", "24", "--burst", "600", "--concurrency", "1,8",
        "--explain-reviews", "20", "--explain-reviews-accurate", "1", "--stats-records", "500",
        # The soak's rate is its own: half of each path's maximum, measured first.
        "--soak-minutes", "0.2", "--output", str(output),
    ]  # fmt: skip
    # The explain scenario exports the accurate family's encoder (~30 s) and occludes a review.
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "preprocessing + inference" in done.stdout  # the table was printed

    document = json.loads(output.read_text())
    assert document["machine"]["cores"] >= 1
    figures = document["figures"]
    for scenario, prefix in SCENARIO_PREFIXES.items():
        assert any(f["scenario"].startswith(prefix) for f in figures), f"no {scenario} figures"
    for f in figures:
        assert f["values"], f
        assert all(math.isfinite(v) for v in f["values"]), f
    by_name = {(f["scenario"], f["metric"]): f for f in figures}
    for transport in ("3 REST", "3 WebSocket", "4 mlflow models serve",
                      "4 mlflow models serve, tuned"):  # fmt: skip
        for c in (1, 8):
            assert by_name[(f"{transport} c={c}", "throughput")]["median"] > 0
            assert by_name[(f"{transport} c={c}", "failed")]["median"] == 0
    assert by_name[("2 Kafka burst, 2 workers", "unanswered")]["median"] == 0
    parts = "3 REST c=1, where the time goes"
    assert by_name[(parts, "Kafka round trip through a worker")]["median"] > 0
    assert by_name[(parts, "HTTP alone (GET /healthz)")]["median"] > 0
    for peer in ("mlflow", "mlflow tuned"):  # taking turns with REST, one request at a time
        assert by_name[(parts, f"{peer} /invocations, taking turns with REST")]["median"] > 0
        assert (parts, f"REST p50 - {peer} p50, taking turns") in by_name
    for path in ("webhook", "polling only"):
        assert by_name[(f"5 hot reload, {path}", "failed requests")]["median"] == 0
    for family in ("fast", "accurate"):
        assert by_name[(f"7 explain, {family}", "p50 latency per review")]["median"] > 0
    for monitor in ("off", "on"):
        assert by_name[("8 stats path", f"drift monitor {monitor}")]["median"] > 0
        assert by_name[("8 stats path", f"predictions, monitor {monitor}")]["median"] > 0
    for path in ("Kafka", "REST"):
        assert by_name[("9 soak, the maximum", f"{path} answered")]["median"] > 0
    assert by_name[("9 soak", "Kafka requests sent")]["median"] > 0
    assert by_name[("9 soak", "REST requests sent")]["median"] > 0
    lost = by_name[("9 soak", "lost (unanswered or not stored)")]
    assert lost["median"] == 0, [f for f in figures if f["scenario"] == "9 soak"]
    assert by_name[("9 soak", "counted twice")]["median"] == 0
    # Read back from PostgreSQL: every request sent has its row (a short soak is one minute).
    sent = sum(by_name[("9 soak", f"{path} requests sent")]["median"] for path in ("Kafka", "REST"))
    stored = by_name[("9 soak", "rows into PostgreSQL per minute")]["median"]
    assert stored == pytest.approx(sent, rel=1e-9)
    assert by_name[("9 soak", "produced -> row in PostgreSQL p50 per minute")]["median"] > 0
