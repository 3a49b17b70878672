"""What a run did, counted as it goes and printed at the end (and as JSON on request)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from contracts.reviewfiles import BadRow


@dataclass
class Report:
    command: str
    rows: int = 0  # good rows the input offered for this run
    bad_rows: int = 0
    bad: list[BadRow] = field(default_factory=list)
    skipped: int = 0  # already answered in the output file (bulk resume)
    sent: int = 0  # delivered to Kafka (acks=all)
    send_failed: int = 0  # the broker did not take it
    answered: int = 0  # a prediction came back
    rejected: int = 0  # a worker dead-lettered it
    timed_out: int = 0  # sent, but no answer before giving up
    unanswered: int = 0  # sent, but waiting stopped early (interrupted)
    feedback_sent: int = 0
    feedback_failed: int = 0
    labelled: int = 0  # answered rows whose true label is known
    correct: int = 0
    elapsed_s: float = 0.0
    first_send_s: float | None = None  # monotonic clock, for the achieved rate
    last_send_s: float | None = None
    interrupted: bool = False
    output: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.send_failed + self.rejected

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def send_rate(self) -> float | None:
        """Requests per second between the first and the last send."""
        if self.first_send_s is None or self.last_send_s is None or self.sent < 2:
            return None
        span = self.last_send_s - self.first_send_s
        return (self.sent - 1) / span if span > 0 else None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 3 if self.failed or self.timed_out else 0

    def note_send(self, now: float) -> None:
        if self.first_send_s is None:
            self.first_send_s = now
        self.last_send_s = now

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bad"] = [str(bad) for bad in self.bad]
        data.pop("first_send_s")
        data.pop("last_send_s")
        data.update(failed=self.failed, accuracy=self.accuracy, send_rate=self.send_rate)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self, *, waited: bool, feedback: bool) -> str:
        state = "interrupted" if self.interrupted else "finished"
        lines = [f"{self.command} {state} in {self.elapsed_s:.1f} s"]

        def add(name: str, value: object) -> None:
            lines.append(f"  {name:<14} {value}")

        add("rows", self.rows)
        if self.bad_rows:
            add("bad rows", f"{self.bad_rows} (skipped, reported above)")
        if self.skipped:
            add("skipped", f"{self.skipped} (already answered in the output)")
        add("sent", self.sent)
        if waited:
            add("answered", self.answered)
        add("failed", f"{self.failed} (not delivered {self.send_failed}, rejected {self.rejected})")
        if waited:
            add("timed out", self.timed_out)
            if self.unanswered:
                add("not awaited", f"{self.unanswered} (sent; answers not awaited after Ctrl-C)")
        if feedback:
            add("feedback sent", f"{self.feedback_sent} (failed {self.feedback_failed})")
        if self.accuracy is not None:
            add(
                "accuracy", f"{self.accuracy:.4f} ({self.correct}/{self.labelled} labelled answers)"
            )
        if self.send_rate is not None:
            add("send rate", f"{self.send_rate:.1f} reviews/s")
        if self.output:
            add("output", self.output)
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
