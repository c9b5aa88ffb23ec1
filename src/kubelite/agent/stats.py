"""Resource usage of the node and its pods, served as kubelet's Summary API
(`GET /stats/summary`), which the API server's metrics.k8s.io reads.

CPU usage is a rate, so the collector samples the runtime's stats periodically and
keeps the last two samples: usageNanoCores is the CPU time between them over the
time between them (cumulative nanoseconds per second are nanocores). The node's
figure is the runtime's cgroup root, the sum of its pods, which on a shared machine
(`kubelite up` runs several nodes on one host) is what belongs to this node.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubelite.agent.server import AgentServer
from kubelite.runtime.base import ContainerRuntime, Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.time()
    usage: Usage


def _timestamp(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatsCollector:
    def __init__(self, runtime: ContainerRuntime, *, node_name: str,
                 interval: float = 5.0) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.interval = interval
        self._samples: dict[str, tuple[Sample | None, Sample]] = {}  # id -> previous, latest

    async def sample(self) -> None:
        now = time.time()
        current = await self.runtime.stats()
        self._samples = {key: ((self._samples.get(key) or (None, None))[1], Sample(now, u))
                         for key, u in current.items()}

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # a sandbox vanishing mid-read: the next round is whole
                log.exception("sampling resource usage")
            await asyncio.sleep(self.interval)

    def _stats(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        pair = self._samples.get(key)
        if pair is None:
            return None
        before, latest = pair
        cpu: dict[str, Any] = {"time": _timestamp(latest.at),
                               "usageCoreNanoSeconds": latest.usage.cpu_ns}
        if before is not None and latest.at > before.at:
            rate = (latest.usage.cpu_ns - before.usage.cpu_ns) / (latest.at - before.at)
            cpu["usageNanoCores"] = max(0, round(rate))
        memory = {"time": _timestamp(latest.at),
                  "workingSetBytes": latest.usage.memory_working_set}
        return cpu, memory

    async def summary(self) -> dict[str, Any]:
        """The Summary API document (kubelet's /stats/summary), CPU and memory only."""
        node: dict[str, Any] = {"nodeName": self.node_name}
        if stats := self._stats(""):
            node["cpu"], node["memory"] = stats
        containers: dict[str, list[dict[str, Any]]] = {}
        for status in await self.runtime.list_containers():
            if status.state == "running" and (stats := self._stats(status.id)):
                containers.setdefault(status.sandbox_id, []).append(
                    {"name": status.name, "cpu": stats[0], "memory": stats[1]})
        pods = []
        for sb in await self.runtime.list_sandboxes():
            c = sb.config
            pod: dict[str, Any] = {
                "podRef": {"name": c.name, "namespace": c.namespace, "uid": c.pod_uid},
                "containers": sorted(containers.get(sb.id, []), key=lambda x: x["name"])}
            if stats := self._stats(sb.id):
                pod["cpu"], pod["memory"] = stats
            pods.append(pod)
        return {"node": node, "pods": pods}


def install(server: AgentServer, collector: StatsCollector) -> None:
    async def summary(_: web.Request) -> web.Response:
        return web.json_response(await collector.summary())

    # kubelet authorizes /stats/* as the nodes/stats subresource.
    server.add_route("GET", "/stats/summary", summary, subresource="stats")
