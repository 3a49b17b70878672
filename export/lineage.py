"""Where a model version came from: run, data, code, parameters, gates, alias history."""

from __future__ import annotations

import json
from typing import Any

from mlflow import MlflowClient

from export.registry import GATES_TAG, RegistryError

HISTORY_TAGS = (
    "promoted_by",
    "promoted_reason",
    "promoted_at",
    "previous_production",
    "rolled_back_by",
    "rolled_back_reason",
    "rolled_back_at",
    "restored_by",
    "restored_reason",
    "restored_at",
    "serving_reason",
    "shipped_at",
    "override.by",
    "override.reason",
    "override.at",
    "release.refused",
    "release.refused_at",
    "rollback.automatic",
)


def lineage(client: MlflowClient, model_name: str, version: str) -> dict[str, Any]:
    """Everything known about one model version, as plain data."""
    try:
        mv = client.get_model_version(model_name, version)
    except Exception as exc:
        raise RegistryError(f"{model_name} v{version} does not exist ({exc})") from None
    tags = dict(mv.tags)
    result: dict[str, Any] = {
        "model": model_name,
        "version": str(mv.version),
        "aliases": list(mv.aliases),
        "source": mv.source,
        "bundle_sha256": tags.get("bundle_sha256"),
        "family": tags.get("family"),
        "gates": {
            "overall": tags.get(GATES_TAG, "not recorded"),
            **{
                key.split(".")[1]: f"{value} - {tags.get(f'{key}.detail', '')}"
                for key, value in sorted(tags.items())
                if key.startswith("gate.") and key.count(".") == 1
            },
        },
        "history": {k: tags[k] for k in HISTORY_TAGS if tags.get(k)},
    }
    if not mv.run_id:
        return result
    run = client.get_run(mv.run_id)
    run_tags = run.data.tags
    result["run"] = {
        "id": mv.run_id,
        "name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "artifact_uri": run.info.artifact_uri,
    }
    result["code"] = {
        "git_commit": run_tags.get("git_commit"),
        "git_dirty": run_tags.get("git_dirty"),
        "uv_lock_sha256": run_tags.get("uv_lock_sha256"),
        "params_file": run_tags.get("params_file"),
        "params_file_sha256": run_tags.get("params_file_sha256"),
    }
    # The container image the run executed in ("none": a virtual environment; absent: a run
    # from before images were recorded).
    result["image"] = {
        "reference": run_tags.get("image", "not recorded"),
        "digest": run_tags.get("image.digest", "not recorded"),
    }
    if run_tags.get("fingerprint"):  # trained by `python -m training retrain`
        result["retrain"] = {
            "fingerprint": run_tags["fingerprint"],
            "changed": run_tags.get("retrain.changed", ""),
            "trigger": run_tags.get("retrain.trigger", ""),
            "snapshot_digest": run_tags.get("snapshot_digest"),
        }
    datasets = []
    for item in run.inputs.dataset_inputs if run.inputs else []:
        name = item.dataset.name
        context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")
        sources = json.loads(run_tags.get(f"data.{name}.sources", "[]"))
        datasets.append(
            {
                "name": name,
                "context": context,
                "digest": item.dataset.digest,
                "sha256": run_tags.get(f"data.{name}.sha256"),
                "rows": run_tags.get(f"data.{name}.rows"),
                "sources": sources,
            }
        )
    result["data"] = datasets
    result["params"] = dict(sorted(run.data.params.items()))
    result["metrics"] = {
        k: v
        for k, v in sorted(run.data.metrics.items())
        if k.startswith(("test_", "val_", "training_time", "onnx_", "behaviour", "best_epoch"))
    }
    return result


def render(info: dict[str, Any]) -> str:
    """A readable multi-line report of :func:`lineage`'s result."""
    lines = [
        f"model {info['model']} v{info['version']} ({info.get('family') or 'unknown family'})",
        f"  aliases: {', '.join(info['aliases']) or '-'}",
        f"  bundle sha256: {info['bundle_sha256']}",
        f"  source: {info['source']}",
    ]
    run = info.get("run")
    if run:
        lines += [
            f"run {run['id']} ({run['name']}, experiment {run['experiment_id']}, {run['status']})",
            f"code: commit {info['code']['git_commit']} dirty={info['code']['git_dirty']} "
            f"uv.lock sha256 {info['code']['uv_lock_sha256']}",
            f"parameters file: {info['code']['params_file']}"
            f" (sha256 {info['code']['params_file_sha256']})",
            f"image: {info['image']['reference']} (digest {info['image']['digest']})",
        ]
        retrain = info.get("retrain")
        if retrain:
            lines += [
                f"fingerprint: {retrain['fingerprint']} (changed: {retrain['changed'] or '-'}; "
                f"trigger: {retrain['trigger'] or '-'})",
                f"data snapshot: {retrain['snapshot_digest']} "
                f"(python -m training snapshot --fetch {retrain['snapshot_digest']})",
            ]
        lines.append("data:")
        for d in info["data"]:
            files = ", ".join(f"{s['path']} (sha256 {s['sha256']})" for s in d["sources"])
            lines.append(
                f"  {d['name']} [{d['context']}]: {d['rows']} rows, digest {d['digest']}, "
                f"sha256 {d['sha256']}, from {files}"
            )
        lines.append("params:")
        lines += [f"  {k} = {v}" for k, v in info["params"].items()]
        lines.append("metrics:")
        lines += [f"  {k} = {v:.6g}" for k, v in info["metrics"].items()]
    lines.append(f"gates: {info['gates']['overall']}")
    lines += [f"  {k}: {v}" for k, v in info["gates"].items() if k != "overall"]
    if info["history"]:
        lines.append("history:")
        lines += [f"  {k} = {v}" for k, v in info["history"].items()]
    return "\n".join(lines)
