"""``python -m deploy.monitoring.prometheusrule``: write the Kubernetes PrometheusRule from
``deploy/monitoring/rules.yml``, the one source of the alerting rules.

The Prometheus Operator's PrometheusRule carries the same ``groups`` as a rules file, so the
manifest is the file's groups under a header; ``--check`` exits 1 when the committed manifest
differs (tests/deploy/test_k8s.py holds them together too).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

HERE = Path(__file__).parent
RULES = HERE / "rules.yml"
MANIFEST = HERE.parent / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/monitoring/rules.yml by\n"
    "# `python -m deploy.monitoring.prometheusrule`: edit the rules there, then run it again\n"
    "# (a test fails while the two differ).\n"
)

app = typer.Typer(add_completion=False)


def groups(path: Path = RULES) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return loaded


def manifest() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "reviewstream",
            # The label a Prometheus's ruleSelector usually picks (kube-prometheus-stack's
            # release label is set by the overlay that knows the release's name).
            "labels": {"app.kubernetes.io/name": "reviewstream", "role": "alert-rules"},
        },
        "spec": {"groups": groups()},
    }


def render() -> str:
    return HEADER + yaml.safe_dump(manifest(), sort_keys=False, width=100, allow_unicode=True)


@app.command()
def main(
    check: Annotated[bool, typer.Option(help="exit 1 if the manifest is not up to date")] = False,
) -> None:
    text = render()
    if check:
        if not MANIFEST.exists() or MANIFEST.read_text() != text:
            typer.echo(f"{MANIFEST} is out of date: run python -m deploy.monitoring.prometheusrule")
            raise typer.Exit(1)
        return
    MANIFEST.write_text(text)
    typer.echo(f"wrote {MANIFEST}")


if __name__ == "__main__":
    sys.exit(app())
