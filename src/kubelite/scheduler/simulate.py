"""Hollow nodes (like kubemark or kwok): Node objects with capacity, labels and
Leases, whose bound pods are reported Running and Ready without any container.
They let the control plane be tested and measured at scale on one machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from kubelite.agent.lease import LeaseHeartbeat
from kubelite.api.registry import lookup
from kubelite.client import AlreadyExists, Client, Informer
from kubelite.client.errors import ClientError, Conflict, NotFound
from kubelite.controllers.podutil import now_utc, rfc3339
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)
Obj = dict[str, Any]
NODES = lookup("", "v1", "nodes")
PODS = lookup("", "v1", "pods")
LEASE_SECONDS = 40


@dataclass(frozen=True)
class HollowSpec:
    count: int
    prefix: str = "hollow"
    cpu: str = "32"
    memory: str = "256Gi"
    pods: int = 110
    zones: int = 0
    lease_interval: float = 10.0
    # report bound pods Running (off: nodes only, as scheduler_perf measures)
    run_pods: bool = True


def node_object(spec: HollowSpec, index: int) -> Obj:
    name = f"{spec.prefix}-{index}"
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "kubelite.io/hollow": "true"}
    if spec.zones:
        labels["topology.kubernetes.io/zone"] = f"zone-{index % spec.zones}"
    capacity = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods),
                "ephemeral-storage": "100Gi"}
    now = rfc3339(now_utc())
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "hollow node is ready", "lastHeartbeatTime": now,
                            "lastTransitionTime": now}],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.32.0-kubelite-hollow",
                         "containerRuntimeVersion": "hollow://0", "operatingSystem": "linux",
                         "architecture": "amd64", "osImage": "hollow", "kernelVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": "",
                         "kubeProxyVersion": ""},
        },
    }


class HollowNodes:
    """`async with HollowNodes(client, spec):` registers the nodes and keeps them alive."""

    def __init__(self, client: Client, spec: HollowSpec) -> None:
        assert NODES is not None and PODS is not None
        self.client = client
        self.spec = spec
        self.names = {f"{spec.prefix}-{i}" for i in range(spec.count)}
        self.pods = Informer(client, PODS)
        self.pods.add_handlers(on_add=self._pod, on_update=lambda o, n: self._pod(n))
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(64)
        # A kubelet's heartbeat per node: a PUT of the Lease last seen, the cheapest
        # write. Leases last at least LEASE_SECONDS, renewed every lease_interval.
        self._heartbeats = [LeaseHeartbeat(client, name, interval=spec.lease_interval)
                            for name in sorted(self.names)]
        for heartbeat in self._heartbeats:
            heartbeat.duration = max(LEASE_SECONDS, heartbeat.duration)

    async def _register(self, index: int) -> None:
        node = node_object(self.spec, index)
        async with self._limit:
            try:
                await self.client.create(NODES, node)
            except AlreadyExists:
                current = await self.client.get(NODES, node["metadata"]["name"])
                await self.client.update_status(NODES, {**current, "status": node["status"]})

    async def _renew_one(self, heartbeat: LeaseHeartbeat) -> None:
        async with self._limit:
            try:
                await heartbeat.renew()
            except ClientError as exc:
                log.debug("renewing the lease of %s: %s", heartbeat.node_name, exc)

    async def _renew(self) -> None:
        while True:
            started = asyncio.get_running_loop().time()
            await asyncio.gather(*(self._renew_one(h) for h in self._heartbeats))
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(self.spec.lease_interval - elapsed, 0.0))

    def _pod(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName") not in self.names:
            return
        if pod["metadata"].get("deletionTimestamp"):
            # No container to stop: confirm the deletion at once, as a kubelet would.
            task = asyncio.create_task(self._finish_pod(pod))
        elif (pod.get("status") or {}).get("phase") == "Pending":
            task = asyncio.create_task(self._run_pod(pod))
        else:
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        now = rfc3339(now_utc())
        status = {"phase": "Running", "startTime": now, "hostIP": "",
                  "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                 for t in ("Initialized", "Ready", "ContainersReady",
                                           "PodScheduled")],
                  "containerStatuses": [
                      {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                       "ready": True, "restartCount": 0, "started": True,
                       "state": {"running": {"startedAt": now}}}
                      for c in pod["spec"].get("containers") or []]}
        async with self._limit:
            with contextlib.suppress(NotFound, Conflict):
                await self.client.patch(PODS, meta["name"], {"status": status},
                                        namespace=meta["namespace"], subresource="status")

    async def _finish_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        async with self._limit:
            with contextlib.suppress(NotFound, Conflict):
                await self.client.delete(PODS, meta["name"], meta["namespace"],
                                         grace_period_seconds=0,
                                         preconditions={"uid": meta["uid"]})

    async def __aenter__(self) -> HollowNodes:
        await asyncio.gather(*(self._register(i) for i in range(self.spec.count)))
        if self.spec.run_pods:
            self.pods.start()
        self._tasks = [asyncio.create_task(self._renew())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancelled(*self._tasks, *self._pending)
        await self.pods.stop()
