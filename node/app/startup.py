"""Start-up checks that turn an operator's mistake into one line saying what to change.

Each raises ConfigError, which `alertmesh run` prints as `error: ...` and exits 2,
never a traceback (tests/test_ops_startup.py tries each as a new user would).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from node.core.errors import ConfigError

log = logging.getLogger(__name__)


def check_can_listen(host: str, port: int, what: str, setting: str) -> None:
    """Fail early, with the setting to change, if host:port cannot be bound.

    Checked before anything is opened, so the common case (another node holds the
    default port) ends in one line; gRPC's own bind failure is mapped as well
    (node/app/runtime.py bind), for the rare race where the port is taken between.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen for {what} on {host}:{port}: unknown host ({exc.strerror}); "
            f"change {setting}"
        ) from exc
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # Like the servers themselves: a port left in TIME_WAIT is no obstacle.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as exc:
            raise ConfigError(listen_problem(host, port, what, setting, exc.errno)) from exc


def listen_problem(host: str, port: int, what: str, setting: str, code: int | None) -> str:
    if code == errno.EADDRINUSE:
        why = "the port is in use (is another node or program running on it?)"
    elif code == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    elif code == errno.EADDRNOTAVAIL:
        why = "this machine has no such address"
    else:
        why = "the address cannot be bound"
    return f"cannot listen for {what} on {host}:{port}: {why}; choose another with {setting}"


def warn_if_exposed(host: str) -> None:
    """Metrics on a non-loopback address: allowed (no alert content, no keys), but said."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning(
            "metrics are served on %s, not only on this machine: they show peer names, "
            "counts and latencies (never alert content or keys); restrict access with a "
            "firewall or listen on 127.0.0.1",
            host,
            extra={"event": "metrics_exposed", "address": host},
        )
