"""The pod network of one node: Debian's CNI plugins, configured from the node's podCIDR.

Every pod gets a veth into the bridge `cni0` of the node's network namespace
(the `bridge` plugin, gateway on the bridge, hairpin on so that a pod reaches
itself through its Service), an address of the node's podCIDR from
`host-local` (its reservations under the agent's root, so that they are per
node), and host ports from `portmap`. The network is not ready until the
control plane has given the node a podCIDR (controllers/nodeipam.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from kubelite.network.cni import DEFAULT_PATH, Attachment, CNIError, NetworkList, result_ips

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NETWORK_NAME = "kubelite"
BRIDGE = "cni0"
# host-local's files beside the reservations (named by address) in its data dir.
_IPAM_BOOKKEEPING = ("lock",)


def pod_conflist(*, subnet: str, ipam_dir: Path, bridge: str = BRIDGE,
                 name: str = NETWORK_NAME) -> Obj:
    """The node's network configuration list (what kubelet finds in /etc/cni/net.d)."""
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "hairpinMode": True,
             # Masquerade is the node's (network/masquerade.py): the plugin's own
             # would need iptables rules per pod.
             "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(ipam_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


PortMapping = tuple[int, int, str, str]  # host port, container port, protocol, host IP


def port_mappings(pod: Obj) -> tuple[PortMapping, ...]:
    """The hostPorts of the pod's containers (kubelet's PortMappings of a sandbox)."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append((int(p["hostPort"]), int(p["containerPort"]),
                            p.get("protocol") or "TCP", p.get("hostIP") or ""))
    return tuple(out)


def cni_port_mappings(ports: Iterable[PortMapping]) -> list[Obj]:
    """The portmap plugin's `portMappings` capability argument."""
    out = []
    for host_port, container_port, protocol, host_ip in ports:
        entry: Obj = {"hostPort": host_port, "containerPort": container_port,
                      "protocol": protocol.lower()}
        if host_ip:
            entry["hostIP"] = host_ip
        out.append(entry)
    return out


class PodNetwork:
    """Attach and detach pod sandboxes; `configure(pod_cidr)` makes it ready."""

    def __init__(self, root: Path, *, bridge: str = BRIDGE,
                 path: tuple[str, ...] = DEFAULT_PATH, netns: str | None = None) -> None:
        self.root = root
        self.bridge = bridge
        self.path = path
        self.netns = netns
        self.ipam_dir = root / "ipam"
        self.cache_dir = root / "results"
        self.pod_cidr = ""
        self.ready = asyncio.Event()
        self._net: NetworkList | None = None

    def configure(self, pod_cidr: str) -> None:
        """Use `pod_cidr` for new pods. A node's podCIDR never changes once set, so
        pods attached before keep theirs (DEL uses the cached configuration)."""
        if pod_cidr == self.pod_cidr:
            return
        self.pod_cidr = pod_cidr
        self._net = NetworkList(pod_conflist(subnet=pod_cidr, ipam_dir=self.ipam_dir,
                                             bridge=self.bridge),
                                cache_dir=self.cache_dir, path=self.path, netns=self.netns)
        self.ready.set()
        log.info("pod network ready: %s on bridge %s", pod_cidr, self.bridge)

    async def wait_ready(self, timeout: float) -> NetworkList:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        if self._net is None:
            raise CNIError("kubelite", "ADD", 999,
                           "network is not ready: the node has no podCIDR yet")
        return self._net

    def _list(self) -> NetworkList:
        """For DEL and CHECK, which use the cached configuration and need no podCIDR."""
        if self._net is not None:
            return self._net
        return NetworkList(pod_conflist(subnet="0.0.0.0/32", ipam_dir=self.ipam_dir,
                                        bridge=self.bridge),
                           cache_dir=self.cache_dir, path=self.path, netns=self.netns)

    async def attach(self, sandbox_id: str, netns: str, *, namespace: str, name: str,
                     uid: str, ports: Iterable[PortMapping] = (),
                     wait: float = 30.0) -> tuple[str, ...]:
        """CNI ADD for a sandbox; its addresses. A failed ADD is undone with DEL."""
        net = await self.wait_ready(wait)
        att = Attachment(
            container_id=sandbox_id, netns=netns,
            args=(("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", namespace),
                  ("K8S_POD_NAME", name), ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
                  ("K8S_POD_UID", uid)),
            capability_args={"portMappings": cni_port_mappings(ports)})
        try:
            result = await net.add(att)
        except CNIError:
            with contextlib.suppress(CNIError):
                await net.delete(att)
            raise
        return result_ips(result)

    async def detach(self, sandbox_id: str, netns: str) -> None:
        """CNI DEL; `netns` may be gone already (plugins then release what they hold)."""
        await self._list().delete(Attachment(container_id=sandbox_id, netns=netns))

    async def check(self, sandbox_id: str, netns: str) -> None:
        await self._list().check(Attachment(container_id=sandbox_id, netns=netns))

    async def ips(self, sandbox_id: str) -> tuple[str, ...]:
        result = await asyncio.to_thread(self._list().cached_result, sandbox_id)
        return result_ips(result) if result else ()

    async def sweep(self, live: Callable[[], Awaitable[set[str]]]) -> int:
        """Detach every cached attachment whose sandbox is not among `live()`, then
        drop host-local reservations nobody holds (a crash between ADD and the cache
        write); returns how many were released. What is on disk is read before
        `live()` is asked: a sandbox is recorded before its ADD, so one attached
        meanwhile is either not read yet or already live."""
        net = self._list()
        cached = await asyncio.to_thread(net.cached)
        reserved = await asyncio.to_thread(_reservations, self.ipam_dir)
        alive = await live()
        released = 0
        for doc in cached:
            cid = doc.get("containerId", "")
            if cid in alive:
                continue
            try:
                await net.delete(Attachment(container_id=cid, netns=_if_nsfs(doc.get("netns", "")),
                                            ifname=doc.get("ifName", "eth0")))
                released += 1
            except CNIError as e:
                log.warning("releasing the pod network of sandbox %s: %s", cid, e)
        stray = {key for key, cid in reserved.items()
                 if cid not in alive and cid not in {d.get("containerId") for d in cached}}
        released += await asyncio.to_thread(_release, self.ipam_dir, stray)
        return released

    def reservations(self) -> dict[str, str]:
        """host-local's reservations: address -> container id (blocking)."""
        return _reservations(self.ipam_dir)


def _if_nsfs(path: str) -> str:
    """`path` if a namespace is still mounted there, else "" (DEL with a plain file
    where the namespace was fails, while an empty CNI_NETNS is accepted)."""
    try:
        return path if path and os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev \
            else ""
    except OSError:
        return ""


def _reservations(ipam_dir: Path) -> dict[str, str]:
    out = {}
    try:
        networks = [d for d in ipam_dir.iterdir() if d.is_dir()]
    except FileNotFoundError:
        return {}
    for d in networks:
        for f in d.iterdir():
            if f.name in _IPAM_BOOKKEEPING or f.name.startswith("last_reserved_ip"):
                continue
            try:
                out[f"{d.name}/{f.name}"] = f.read_text().split()[0]
            except (OSError, IndexError):
                continue
    return out


def _release(ipam_dir: Path, keys: set[str]) -> int:
    for key in keys:
        (ipam_dir / key).unlink(missing_ok=True)
    return len(keys)
