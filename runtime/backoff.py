"""One backoff for every retry and reconnect loop: exponential from 0.2 s, capped.

Services start in any order and outlive restarts of Kafka, PostgreSQL and MLflow, so each of
them retries; they all wait the same way, and only the cap is theirs to choose (a command-line
producer gives up its waits sooner than a service).
"""

from __future__ import annotations

from tenacity import wait_exponential
from tenacity.wait import wait_base

FIRST_WAIT_S = 0.2
DEFAULT_CAP_S = 5.0


def backoff(cap_s: float = DEFAULT_CAP_S) -> wait_base:
    return wait_exponential(multiplier=FIRST_WAIT_S, max=cap_s)
