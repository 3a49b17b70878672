"""What each import costs a worker: resident memory and time, each group alone in a fresh
interpreter (so shared dependencies count in each group that pulls them), then everything
``python -m workers`` imports, then a bundle's ONNX Runtime session with its reference check
(the peak, VmHWM, as well: parsing a model holds a second copy of its weights for a moment).

``python -m benchmarks.imports [--bundle DIR]`` prints the table; ``make bench``'s memory
scenario records the same rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

# group -> the modules imported for it. MLflow is not a worker's any more: it is measured for
# comparison, where installed.
GROUPS: dict[str, tuple[str, ...]] = {
    "pydantic + pydantic-settings": ("pydantic", "pydantic_settings"),
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime",),
    "tokenizers": ("tokenizers",),
    "aiokafka": ("aiokafka",),
    "aiohttp": ("aiohttp",),
    "prometheus_client": ("prometheus_client",),
    "cryptography (Ed25519)": ("cryptography.hazmat.primitives.asymmetric.ed25519",),
    "typer": ("typer",),
    "mlflow (no longer imported)": ("mlflow",),
    "all of python -m workers": ("workers.__main__",),
}
ALL_OF_THE_WORKER = ("all of python -m workers",)

PROBE = r"""
import importlib, json, sys, time
def status():
    values = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) / 1024
    return values
modules, bundle = json.loads(sys.argv[1]), sys.argv[2]
before = status()
started = time.perf_counter()
try:
    for name in modules:
        importlib.import_module(name)
except ImportError as exc:
    print(json.dumps({"missing": str(exc)}))
    raise SystemExit(0)
result = {"mib": status()["VmRSS"] - before["VmRSS"], "ms": (time.perf_counter() - started) * 1e3}
if bundle:
    from pathlib import Path
    from inference import OnnxPredictor, load_bundle
    loaded = status()
    predictor = OnnxPredictor(load_bundle(Path(bundle)))
    predictor.check_reference()
    after = status()
    result |= {"model_mib": after["VmRSS"] - loaded["VmRSS"],
               "model_peak_mib": after["VmHWM"] - loaded["VmRSS"], "total_peak_mib": after["VmHWM"]}
print(json.dumps(result))
"""


@dataclass(frozen=True)
class Cost:
    group: str
    mib: float
    ms: float
    missing: str | None = None
    model_mib: float | None = None  # the bundle's session after the worker's imports
    model_peak_mib: float | None = None
    total_peak_mib: float | None = None


def measure(group: str, modules: tuple[str, ...], bundle: Path | None = None) -> Cost:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules), str(bundle or "")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=root,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    if "missing" in data:
        return Cost(group, float("nan"), float("nan"), missing=data["missing"])
    return Cost(group, **data)


def import_costs(bundle: Path | None = None, *, groups: Sequence[str] | None = None) -> list[Cost]:
    """Each group alone (every one by default); the bundle (if any) loaded after all of the
    worker's imports."""
    return [
        measure(group, GROUPS[group], bundle if group in ALL_OF_THE_WORKER else None)
        for group in (groups or GROUPS)
    ]


def main(
    bundle: Annotated[
        Path | None, typer.Option(help="also load this bundle after the imports")
    ] = None,
) -> None:
    print("| import | MiB (RSS) | ms |\n| --- | ---: | ---: |")
    for cost in import_costs(bundle):
        if cost.missing:
            print(f"| {cost.group} | not installed | |")
            continue
        print(f"| {cost.group} | {cost.mib:.1f} | {cost.ms:.0f} |")
        if cost.model_mib is not None:
            print(f"| + the bundle's session | {cost.model_mib:.1f} "
                  f"(peak +{cost.model_peak_mib:.1f}) | peak {cost.total_peak_mib:.1f} MiB "
                  "in all |")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
