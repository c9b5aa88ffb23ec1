"""Free ports on loopback, for the servers tests start.

A port is handed out free but bound later, by a server the test starts: in
between, the kernel may give it to an outgoing connection as its local port if
it lies in the ephemeral range, and the server then fails to bind (seen in CI:
the ingress of an e2e cluster never listened). So ports come from below that
range, and no port is handed out twice in one run.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_given: set[int] = set()
_pick = random.Random()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(*kinds: socket.SocketKind) -> int:
    low = _ephemeral_low()
    while True:
        port = _pick.randrange(10000, max(low, 20000))
        if port in _given:
            continue
        try:
            for kind in kinds:
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        _given.add(port)
        return port


def free_port() -> int:
    return _free(socket.SOCK_STREAM)


def free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP, as a DNS server binds both."""
    return _free(socket.SOCK_DGRAM, socket.SOCK_STREAM)
