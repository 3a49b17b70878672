"""Whether the fleet followed a shipped version in time: the pure rule behind the watcher's
FleetNotAcknowledging alert (which, during the version's probation, rolls it back)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from contracts import Alert, AlertStatus, ModelChanged
from runtime.fleet import FleetView, acknowledged

ALERT = "FleetNotAcknowledging"


@dataclass(frozen=True)
class Overdue:
    event: ModelChanged
    pending: list[str]
    waited_s: float

    def alert(self) -> Alert:
        e = self.event
        workers = ", ".join(self.pending)
        return Alert(
            name=ALERT,
            status=AlertStatus.FIRING,
            severity="critical",
            labels={"model_name": e.model_name, "model_version": e.version, "alias": e.alias},
            summary=f"{len(self.pending)} live worker(s) do not serve {e.model_name} "
            f"v{e.version} {self.waited_s:.0f}s after it shipped",
            description=f"not on v{e.version}: {workers} (GET /v1/admin/fleet says why)",
            starts_at=datetime.now(UTC),
            fingerprint=f"fleet-not-acknowledging:{e.model_name}:{e.version}"[-128:],
        )


def overdue(
    view: FleetView, event: ModelChanged, *, waited_s: float, deadline_s: float
) -> Overdue | None:
    """The live workers still not on ``event``'s version after the deadline; None when every
    live worker serves it, the deadline has not passed, or no worker is live at all (a fleet
    that is down is ServiceDown's and NoModelServed's to say, and no rollback would help)."""
    if waited_s < deadline_s:
        return None
    done, pending = acknowledged(view, event.model_name, event.alias, event.version)
    if done or not pending:
        return None
    return Overdue(event, pending, waited_s)
