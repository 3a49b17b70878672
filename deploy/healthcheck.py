"""``python -m deploy.healthcheck <package> [path]``: the container images' HEALTHCHECK.

Slim images have no curl, and each service's port is a setting, so the check reads the same
variable the service reads (``RS_WORKER_PORT``...) and asks ``/healthz`` (or ``/readyz``) on
the loopback interface. Exit 0 when the answer is 2xx, 1 otherwise, with the reason on stderr.

:data:`ENDPOINTS` is also the deployment's one table of where each service serves its health
and metrics; the deploy tests hold it against the services' own settings, the compose file
and the Kubernetes probes.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Annotated

import typer

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class Endpoint:
    """Where one service serves /healthz, /readyz and /metrics."""

    port_env: str
    default_port: int
    tls_env: str | None = None  # a set certificate path means the port speaks HTTPS

    @property
    def host_env(self) -> str:
        return self.port_env.removesuffix("PORT") + "HOST"

    def url(self, path: str, environ: dict[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        port = int(env.get(self.port_env) or self.default_port)
        scheme = "https" if self.tls_env and env.get(self.tls_env) else "http"
        return f"{scheme}://127.0.0.1:{port}{path}"


ENDPOINTS: dict[str, Endpoint] = {
    "workers": Endpoint("RS_WORKER_PORT", 9101),
    "stats": Endpoint("RS_STATS_PORT", 9102),
    "registry_watcher": Endpoint("RS_WATCHER_PORT", 9103),
    # The gateway's operations port: its API port asks for an admin key on /readyz and /metrics.
    "gateway": Endpoint("RS_GATEWAY_OPS_PORT", 9100),
}
# The gateway's API (REST, WebSocket, the UI, Alertmanager's webhook): what an Ingress routes.
GATEWAY_API = Endpoint("RS_GATEWAY_PORT", 8000, tls_env="RS_GATEWAY_TLS_CERTFILE")


class Unhealthy(Exception):
    """The service did not answer 2xx."""


def check(url: str, *, timeout_s: float = 3.0) -> int:
    """GET ``url``; returns the status, raises :class:`Unhealthy` unless it is 2xx."""
    if not url.startswith(("http://", "https://")):
        raise Unhealthy(f"not an http(s) URL: {url}")
    context = None
    if url.startswith("https://"):
        # The certificate names the public host, not 127.0.0.1: this checks liveness, not
        # identity, and never leaves the container.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:  # noqa: S310 - scheme checked above
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"{url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"{url} unreachable: {exc}") from None
    if not 200 <= status < 300:
        raise Unhealthy(f"{url} answered {status}")
    return status


app = typer.Typer(add_completion=False)


@app.command()
def main(
    package: Annotated[str, typer.Argument(help=f"one of {', '.join(ENDPOINTS)}")],
    path: Annotated[str, typer.Argument(help="/healthz (alive) or /readyz (ready)")] = HEALTH_PATH,
    timeout_s: Annotated[float, typer.Option(help="give up after this long")] = 3.0,
) -> None:
    """Exit 0 when the service answers 2xx on its health port, 1 otherwise."""
    endpoint = ENDPOINTS.get(package)
    if endpoint is None:
        raise typer.BadParameter(f"unknown service {package!r}; expected one of {list(ENDPOINTS)}")
    try:
        check(endpoint.url(path), timeout_s=timeout_s)
    except Unhealthy as exc:
        typer.echo(f"unhealthy: {exc}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    sys.exit(app())
