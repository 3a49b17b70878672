"""A port taken by someone else is the most common start-up failure: say which setting moves it."""

from __future__ import annotations

import errno
import socket


class PortInUse(SystemExit):
    pass


def check_free(host: str, port: int, *, what: str, setting: str) -> None:
    """Raise PortInUse (a clean exit with a message) if ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                f"error: {what} cannot listen on {host}:{port}: the port is already in use "
                f"(another reviewstream stack, or another program). Stop it, or choose another "
                f"port with the setting {setting}."
            ) from None
