"""Run a server as a child process, initialise it once it answers, and pass signals through.

The supervisor (honcho) sees one long-running process per component; the component's
one-shot set-up (topics, migrations) runs here as soon as the server is ready, so nothing
in the Procfile exits early and brings the stack down.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def run_child(
    cmd: Sequence[str],
    *,
    initialise: Callable[[subprocess.Popen[bytes]], Coroutine[Any, Any, None]],
    user: str | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    stop_delay_s: float = 0.0,
    then: tuple[signal.Signals, float] | None = None,
) -> int:
    """Start ``cmd``, await ``initialise`` while it runs, then wait for it to exit.

    SIGINT/SIGTERM received here are passed to the child as ``stop_signal``, ``stop_delay_s``
    later; with ``then``, a second signal follows that many seconds after the first if the
    child still runs. honcho signals a whole process group, so a child whose stop is delayed
    gets a session of its own, and dies with this process should honcho kill it first (Linux):
    no server is left behind holding its ports.
    """
    return run_children(
        [cmd],
        initialise=lambda children: initialise(children[0]),
        user=user,
        stop_signal=stop_signal,
        stop_delay_s=stop_delay_s,
        then=then,
    )


def run_children(
    cmds: Sequence[Sequence[str]],
    *,
    initialise: Callable[[list[subprocess.Popen[bytes]]], Coroutine[Any, Any, None]],
    user: str | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    stop_delay_s: float = 0.0,
    then: tuple[signal.Signals, float] | None = None,
) -> int:
    """:func:`run_child` for servers that run side by side (a cluster's nodes): every one gets
    the signals; this returns once all have exited, with the first failure's code. One that
    dies alone leaves the others running."""
    delayed = stop_delay_s > 0
    children = [
        subprocess.Popen(
            list(cmd),
            user=user,
            stdout=sys.stdout,
            stderr=sys.stderr,
            start_new_session=delayed,
            preexec_fn=_die_with_parent if delayed and sys.platform == "linux" else None,
        )
        for cmd in cmds
    ]

    def send(signum: signal.Signals) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    def later(seconds: float, signum: signal.Signals) -> None:
        timer = threading.Timer(seconds, send, args=(signum,))
        timer.daemon = True
        timer.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        if delayed:
            later(stop_delay_s, stop_signal)
        else:
            send(stop_signal)
        if then is not None:
            later(stop_delay_s + then[1], then[0])

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        asyncio.run(initialise(children))
    except BaseException:
        log.exception("initialisation failed; stopping %s", cmds[0][0])
        send(stop_signal)
        for child in children:
            child.wait()
        return 1
    codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)


async def wait_ready(
    child: subprocess.Popen[bytes] | Sequence[subprocess.Popen[bytes]],
    what: str,
    ready: Awaitable[None],
) -> None:
    """Await ``ready``, failing fast if the server (any of ``child``, given several) dies first."""
    children = [child] if isinstance(child, subprocess.Popen) else list(child)

    async def exited() -> None:
        # Polling, not a thread blocked in wait(): asyncio.run would wait for that thread.
        while all(c.poll() is None for c in children):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        code = next(c.returncode for c in children if c.returncode is not None)
        raise ChildExited(f"{what} exited with code {code} before it was ready")

    watcher = asyncio.ensure_future(exited())
    readiness = asyncio.ensure_future(ready)
    done, _ = await asyncio.wait({watcher, readiness}, return_when=asyncio.FIRST_COMPLETED)
    for task in (watcher, readiness):
        task.cancel()
    for task in done:
        task.result()


class ChildExited(RuntimeError):
    pass
