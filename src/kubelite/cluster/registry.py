"""`kubelite up --registry HOST:PORT`: a registry on the host, reachable from every
node as HOST:PORT although nodes have no route off the machine.

Each node gets HOST as an address of its own loopback (127.0.0.1 already is one)
and a listening socket on HOST:PORT made inside its network namespace; the
supervisor relays what arrives there to HOST:PORT from the host's namespace.
Image references keep the registry's real name, so the same manifests work on a
cluster whose nodes do reach the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket

from kubelite.agent.netns import netns_socket
from kubelite.cluster import machines
from kubelite.cluster.layout import NodeLayout

log = logging.getLogger(__name__)


def parse(registry: str) -> tuple[str, int]:
    host, _, port = registry.rpartition(":")
    ipaddress.IPv4Address(host)  # an address: a node resolves no names off the machine
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class RegistryRelay:
    """The relays of every node to one registry on the host."""

    def __init__(self, registry: str) -> None:
        self.host, self.port = parse(registry)
        self._servers: dict[str, asyncio.Server] = {}

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError as e:
            log.warning("registry %s:%d: %s", self.host, self.port, e)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def add(self, node: NodeLayout) -> None:
        if node.name in self._servers:
            return
        if not ipaddress.IPv4Address(self.host).is_loopback:
            await machines.run("ip", "-n", node.netns, "addr", "replace", f"{self.host}/32",
                               "dev", "lo")
        # A socket stays in the namespace it was made in: bind and listen act there.
        sock = await netns_socket(str(machines.NETNS_DIR / node.netns))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._servers[node.name] = await asyncio.start_server(self._relay, sock=sock)

    async def close(self) -> None:
        for server in self._servers.values():
            server.close()
        await asyncio.gather(*(s.wait_closed() for s in self._servers.values()))
        self._servers.clear()
