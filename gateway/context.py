"""Everything a request handler may need, wired once by ``gateway.app.create_app``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.alerts import AlertFeed
from gateway.auth import KeyRing
from gateway.bus import RequestBus
from gateway.classifier import Classifier
from gateway.deployment import ModelFeed
from gateway.fleet import FleetFeed
from gateway.metrics import Metrics
from gateway.ratelimit import KeyRates
from gateway.schemas import Limits
from gateway.settings import Settings
from gateway.statistics import StatsFeed, StatsStore
from runtime.health import ReadinessCheck
from runtime.tasks import Supervisor


@dataclass
class Context:
    settings: Settings
    keyring: KeyRing
    metrics: Metrics
    bus: RequestBus
    classifier: Classifier
    stats: StatsStore
    feed: StatsFeed
    models: ModelFeed
    supervisor: Supervisor
    alerts: AlertFeed
    fleet: FleetFeed
    rates: KeyRates
    # /readyz behind both doors (the API port, the operations port): gateway.readiness
    readiness: ReadinessCheck
    websockets: int = 0
    # open WebSockets per API key (sha256), for RS_GATEWAY_WS_MAX_PER_KEY
    sockets_by_key: Counter[str] = field(default_factory=Counter)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_text_chars=self.settings.max_text_chars, max_batch=self.settings.max_batch
        )
