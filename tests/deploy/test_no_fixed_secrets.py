"""No manifest carries a fixed password or API key: each is required, or generated on a first
start into git-ignored files (``deploy.dev_secrets``)."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from deploy import dev_secrets
from gateway.auth import hash_key, load_key_file
from tests.deployrender import (
    COMPOSE_SECRETS,
    DEPLOY,
    ROOT,
    k8s_tree,
    kustomize_build,
    run_compose,
)

MANIFEST = re.compile(r"(\.ya?ml|\.json|\.env|\.sql|\.sh|\.conf|Dockerfile)$")
# A password inside a URL that is not interpolated (${...}) nor a documented placeholder.
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?!\$\{)(?!PASSWORD@)([^@\s/]+)@")
# `password: x`, `PASSWORD=x`, `"token": "x"`: a key named for a credential, a literal value.
ASSIGNED = re.compile(
    r"(?i)[\w.-]*(password|passwd|secret|token|api_key)\"?[ \t]*[:=][ \t]*\"?"
    r"(?![$\s\"?{]|(true|false)\b)\S"
)
# An interpolation whose default is a credential: ${RS_X_PASSWORD:-default}.
# (a default path to a key file or folder, ..._FILE or ..._DIR, names no key itself).
DEFAULTED = re.compile(r"\$\{(?!\w*_(FILE|DIR):)\w*(PASSWORD|SECRET|TOKEN|KEY)\w*:?-")
KEY_HASH = re.compile(r"\"sha256\"\s*:\s*\"[0-9a-f]{64}\"")


def fixed_secrets(text: str) -> list[str]:
    """The lines of ``text`` that hold a credential value of their own."""
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if any(p.search(line) for p in (URL_PASSWORD, ASSIGNED, DEFAULTED, KEY_HASH)):
            found.append(line.strip())
    return found


def tracked_manifests() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in listed if MANIFEST.search(name)]


def test_the_scan_finds_what_the_manifests_used_to_carry() -> None:
    before = [
        "  DATABASE_URL: postgresql://${RS_POSTGRES_USER:-reviewstream}:${RS_POSTGRES_PASSWORD:-reviewstream}@postgres:5432/x",
        "      POSTGRES_PASSWORD: reviewstream",
        "      - DATABASE_URL=postgresql://reviewstream:reviewstream-dev@db.svc:5432/reviewstream",
        '      "sha256": "e438a22f74ce8a7d75db3c5692f78cbc45f40b29b263f268d1fb59c49d35d290"',
        "RS_DB_READER_PASSWORD=0123abcd",
    ]
    for line in before:
        assert fixed_secrets(line), line
    after = [
        "      POSTGRES_PASSWORD: ${RS_POSTGRES_PASSWORD:?run make compose-secrets}",
        "  DATABASE_URL: postgresql://reviewstream_reader:${RS_DB_READER_PASSWORD:?x}@postgres/x",
        "        passwordSecret:",
        "          name: reviewstream-db-writer",
        "#   DATABASE_URL  postgresql://reviewstream:PASSWORD@reviewstream-db-rw.databases.svc",
    ]
    assert not [line for line in after if fixed_secrets(line)]


def test_no_tracked_manifest_carries_a_password_or_key() -> None:
    files = tracked_manifests()
    assert any(p.name == "compose.yaml" for p in files)
    assert any(p.name == "kustomization.yaml" for p in files)
    found = {str(p.relative_to(ROOT)): fixed_secrets(p.read_text()) for p in files}
    assert not {name: lines for name, lines in found.items() if lines}


def test_no_kustomization_generates_a_secret_from_literals() -> None:
    for path in (DEPLOY / "k8s").rglob("kustomization.yaml"):
        for generator in yaml.safe_load(path.read_text()).get("secretGenerator", []):
            assert "literals" not in generator, path


def test_compose_refuses_to_start_without_each_secret() -> None:
    result = run_compose("config", "--quiet", secrets={})
    assert result.returncode != 0
    for name in COMPOSE_SECRETS:
        assert f"required variable {name} is missing" in result.stderr, name
    assert "make compose-secrets" in result.stderr


def test_generated_files_are_ignored_by_git() -> None:
    paths = [
        "deploy/compose/.env",
        "deploy/compose/secrets/api-keys.json",
        "deploy/k8s/overlays/dev/secrets/database.env",
        "deploy/k8s/overlays/dev/secrets/api-keys.json",
        "deploy/k8s/overlays/dev/secrets/database-roles.yaml",
    ]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.split() == paths


def test_compose_secrets_are_made_once_and_start_compose(tmp_path: Path) -> None:
    key = dev_secrets.compose(tmp_path)
    assert key is not None
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert set(values) == set(COMPOSE_SECRETS)
    passwords = [v for k, v in values.items() if k.endswith("PASSWORD")]
    assert len(set(passwords)) == 3
    assert all(len(p) >= 32 for p in passwords)
    records = load_key_file(tmp_path / "secrets" / "api-keys.json")
    assert [(r.name, r.role.label, r.sha256) for r in records] == [
        ("compose-admin", "admin", hash_key(key))
    ]
    before = env_file.read_text()
    assert dev_secrets.compose(tmp_path) is None
    assert env_file.read_text() == before, "a second run changes nothing"

    # compose reads them (the values as the generated .env gives them).
    values["RS_COMPOSE_API_KEYS_FILE"] = str(tmp_path / "secrets" / "api-keys.json")
    result = run_compose("config", "--format", "json", secrets=values)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    url = urlsplit(config["services"]["gateway"]["environment"]["DATABASE_URL"])
    assert url.password == values["RS_DB_READER_PASSWORD"]


def test_k8s_dev_secrets_match_the_cluster_role_secrets(tmp_path: Path) -> None:
    assert dev_secrets.k8s_dev(tmp_path) is not None
    folder = tmp_path / "secrets"
    for name in ("database.env", "database-roles.yaml"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    urls = dict(line.split("=", 1) for line in (folder / "database.env").read_text().split())
    roles = {
        s["stringData"]["username"]: s["stringData"]["password"]
        for s in yaml.safe_load_all((folder / "database-roles.yaml").read_text())
    }
    assert len(set(roles.values())) == 3
    for url in map(urlsplit, urls.values()):
        assert url.password == roles[str(url.username)]
    assert dev_secrets.k8s_dev(tmp_path) is None, "made once"


def test_the_dev_overlay_needs_its_generated_files(tmp_path: Path) -> None:
    """Without `make k8s-dev-secrets`, kustomize refuses the overlay (nothing falls back)."""
    copy = tmp_path / "k8s"
    shutil.copytree(k8s_tree(), copy)
    shutil.rmtree(copy / "overlays" / "dev" / "secrets")
    result = kustomize_build(copy / "overlays" / "dev")
    assert result.returncode != 0
    assert "database.env" in result.stderr
