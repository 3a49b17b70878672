"""Figures as a table on stdout and as JSON with a description of the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    scenario: str
    metric: str
    unit: str
    values: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self, scenario: str, metric: str, unit: str, values: list[float], note: str = ""
    ) -> Figure:
        figure = Figure(scenario, metric, unit, values, note)
        self.figures.append(figure)
        return figure

    def find(self, scenario: str, metric: str) -> Figure | None:
        return next(
            (f for f in self.figures if f.scenario == scenario and f.metric == metric), None
        )

    def table(self) -> str:
        header = f"{'scenario':<28} {'metric':<34} {'median':>12} {'min':>12} {'max':>12}  unit"
        lines = [header, "-" * len(header)]
        for f in self.figures:
            low = min(f.values) if f.values else float("nan")
            high = max(f.values) if f.values else float("nan")
            lines.append(
                f"{f.scenario:<28} {f.metric:<34} {f.median:>12.4g} {low:>12.4g} {high:>12.4g}"
                f"  {f.unit}{'  (' + f.note + ')' if f.note else ''}"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def save(self, path: Path, settings: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "created_at": datetime.now(UTC).isoformat(),
            "machine": machine(),
            "settings": settings,
            "figures": [asdict(f) | {"median": f.median} for f in self.figures],
            "notes": self.notes,
        }
        path.write_text(json.dumps(document, indent=1, default=str))


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
    }
