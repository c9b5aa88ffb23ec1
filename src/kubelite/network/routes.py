"""Routes between nodes, host-gw style: one route per peer node's podCIDR via that
node's InternalIP, kept in the current network namespace (a node's, or the
control plane host's so that DNS and ingress there reach pods).

Routes are marked with a routing protocol number of kubelite's own, and only
marked routes inside the cluster CIDR are ever changed or removed, so that
routes of other software (and of other clusters on other CIDRs) are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import Informer
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODES = lookup("", "v1", "nodes")
# The `proto` of kubelite's routes (iproute2 numbers 0-4 and >= 8 for routing
# daemons; 75 is taken by none of the registered ones).
RTPROT_KUBELITE = 75
# Routes are compared with the kernel's this often even without Node changes, so
# that a route someone deleted comes back.
RESYNC = 30.0


def desired_routes(nodes: Iterable[Obj], *, cluster_cidr: str,
                   skip: str | None = None) -> dict[str, str]:
    """podCIDR -> InternalIP of every node but `skip` whose podCIDR lies in the cluster CIDR."""
    cluster = ipaddress.ip_network(cluster_cidr, strict=False)
    out: dict[str, str] = {}
    for node in nodes:
        if node["metadata"]["name"] == skip:
            continue
        spec, status = node.get("spec") or {}, node.get("status") or {}
        via = next((a.get("address") for a in status.get("addresses") or []
                    if a.get("type") == "InternalIP"), None)
        for cidr in spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []):
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            if via and net.version == cluster.version and net.subnet_of(cluster):  # type: ignore[arg-type]
                out[str(net)] = via
    return out


async def _ip(*args: str, netns: str | None, stdin: str | None = None) -> tuple[int, str, str]:
    prefix = ["nsenter", f"--net=/var/run/netns/{netns}"] if netns else []
    proc = await asyncio.create_subprocess_exec(
        *prefix, "ip", *args, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    return proc.returncode or 0, out.decode(), err.decode()


async def current_routes(*, cluster_cidr: str, netns: str | None = None) -> dict[str, str]:
    """kubelite's routes inside the cluster CIDR: destination -> gateway."""
    code, out, err = await _ip("-j", "route", "show", "proto", str(RTPROT_KUBELITE),
                               "root", cluster_cidr, netns=netns)
    if code != 0:
        raise OSError(f"ip route show: {err.strip()}")
    routes = json.loads(out or "[]")
    return {str(ipaddress.ip_network(r["dst"], strict=False)): r.get("gateway", "")
            for r in routes}


async def apply_routes(want: dict[str, str], *, cluster_cidr: str,
                       netns: str | None = None) -> list[str]:
    """Make kubelite's routes exactly `want`; the errors of routes that could not be
    set (a gateway not on any link yet), the rest applied regardless."""
    have = await current_routes(cluster_cidr=cluster_cidr, netns=netns)
    lines = [f"route del {dst} proto {RTPROT_KUBELITE}" for dst in have if dst not in want]
    lines += [f"route replace {dst} via {via} proto {RTPROT_KUBELITE}"
              for dst, via in want.items() if have.get(dst) != via]
    if not lines:
        return []
    code, _out, err = await _ip("-force", "-batch", "-", netns=netns, stdin="\n".join(lines) + "\n")
    return [line for line in err.splitlines() if line.strip()] if code != 0 else []


class RouteSyncer:
    """Watches Nodes and keeps one route per other node's podCIDR via its InternalIP.

    `node_name` is this node (no route to itself; its own podCIDR is reported
    through `pod_cidr`); None on the control plane host, which routes to all.
    """

    def __init__(self, client: Any, *, cluster_cidr: str, node_name: str | None = None,
                 netns: str | None = None, resync: float = RESYNC) -> None:
        self.cluster_cidr = cluster_cidr
        self.node_name = node_name
        self.netns = netns
        self.resync = resync
        self.informer = Informer(client, NODES)
        # This node's podCIDR, once the control plane has assigned it.
        self.pod_cidr = ""
        self.pod_cidr_assigned = asyncio.Event()
        # Set after each sync that left the kernel's routes as wanted.
        self.synced = asyncio.Event()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.informer.add_handlers(on_add=self._changed, on_update=lambda _o, n: self._changed(n),
                                   on_delete=self._changed)
        self.informer.start()
        self._task = asyncio.create_task(self._run(), name="route syncer")

    async def stop(self, *, remove_routes: bool = False) -> None:
        """Stop syncing; the routes stay unless `remove_routes` (a node leaving the cluster)."""
        if self._task is not None:
            await cancelled(self._task)
            self._task = None
        await self.informer.stop()
        if remove_routes:
            await apply_routes({}, cluster_cidr=self.cluster_cidr, netns=self.netns)

    async def __aenter__(self) -> RouteSyncer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _changed(self, node: Obj) -> None:
        if node["metadata"]["name"] == self.node_name and not self.pod_cidr:
            cidr = (node.get("spec") or {}).get("podCIDR") or ""
            if cidr:
                self.pod_cidr = cidr
                self.pod_cidr_assigned.set()
        self._dirty.set()

    async def sync(self) -> list[str]:
        want = desired_routes(self.informer.list(), cluster_cidr=self.cluster_cidr,
                              skip=self.node_name)
        return await apply_routes(want, cluster_cidr=self.cluster_cidr, netns=self.netns)

    async def _run(self) -> None:
        await self.informer.has_synced.wait()
        while True:
            self._dirty.clear()
            self.synced.clear()
            try:
                errors = await self.sync()
            except (OSError, ValueError) as e:
                errors = [str(e)]
            if errors:
                log.warning("routes to pod networks not all set: %s", "; ".join(errors))
            else:
                self.synced.set()
            delay = 1.0 if errors else self.resync
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), delay)
