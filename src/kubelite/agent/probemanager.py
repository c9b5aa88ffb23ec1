"""The probes of one pod: a ProbeWorker per running container instance and
probe kind, their latest results, and what those results mean for the pod
worker (readiness, started, a liveness or startup kill).

Liveness and readiness probes start once the startup probe (if any) has
succeeded, as kubelet's. After an agent restart, results start from what the
API last showed for the same container ID, so that an adopted pod does not
flap to unready while its first probe is pending.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kubelite.agent import launch
from kubelite.agent.probes import ProbeKind, ProbeWorker, run_handler
from kubelite.runtime.base import ContainerID, ContainerStatus

if TYPE_CHECKING:
    from kubelite.agent.podworker import PodWorker

Obj = dict[str, Any]
_FIELDS: dict[ProbeKind, str] = {"startup": "startupProbe", "liveness": "livenessProbe",
                                 "readiness": "readinessProbe"}


class Probes:
    def __init__(self, worker: PodWorker) -> None:
        self.worker = worker
        self._workers: dict[tuple[str, ProbeKind], tuple[ContainerID, ProbeWorker]] = {}
        # (container, kind) -> (container id, result) for the instance last probed
        self._results: dict[tuple[str, ProbeKind], tuple[ContainerID, bool | None]] = {}
        self._events: set[asyncio.Task[None]] = set()

    def _specs(self) -> dict[str, Obj]:
        spec = self.worker.pod.get("spec") or {}
        return {c["name"]: c for c in [*(spec.get("initContainers") or []),
                                        *(spec.get("containers") or [])]}

    def _reported(self, name: str, cid: ContainerID, field: str) -> bool | None:
        """What the API last showed for this very container instance."""
        want = f"{self.worker.ctx.runtime.name}://{cid}"
        status = self.worker.pod.get("status") or {}
        for cs in [*(status.get("containerStatuses") or []),
                   *(status.get("initContainerStatuses") or [])]:
            if cs.get("name") == name and cs.get("containerID") == want:
                return bool(cs.get(field))
        return None

    def _result(self, name: str, kind: ProbeKind, cid: ContainerID) -> bool | None:
        found = self._results.get((name, kind))
        if found is not None and found[0] == cid:
            return found[1]
        return None

    def started(self, name: str, groups: dict[str, list[ContainerStatus]]) -> bool:
        insts = groups.get(name) or []
        cur = insts[0] if insts else None
        if cur is None or cur.state != "running":
            return False
        if not (self._specs().get(name) or {}).get("startupProbe"):
            return True
        result = self._result(name, "startup", cur.id)
        if result is None:
            result = self._reported(name, cur.id, "started")
        return bool(result)

    def ready(self, name: str, cid: ContainerID) -> bool:
        if not (self._specs().get(name) or {}).get("readinessProbe"):
            return True
        result = self._result(name, "readiness", cid)
        if result is None:
            result = self._reported(name, cid, "ready")
        return bool(result)

    def sync(self, groups: dict[str, list[ContainerStatus]]) -> None:
        """Probe workers for exactly the running instances that need them."""
        wanted: dict[tuple[str, ProbeKind], tuple[ContainerID, Obj]] = {}
        for name, spec in self._specs().items():
            insts = groups.get(name) or []
            cur = insts[0] if insts else None
            if cur is None or cur.state != "running":
                continue
            started = self.started(name, groups)
            for kind, field in _FIELDS.items():
                probe = spec.get(field)
                if not probe or (kind == "startup") == started:
                    continue
                wanted[(name, kind)] = (cur.id, probe)
        for key, (cid, old) in list(self._workers.items()):
            if wanted.get(key, (None,))[0] != cid:
                self._workers.pop(key)
                self._track(asyncio.create_task(old.stop()))
        for key, (cid, probe) in wanted.items():
            if key not in self._workers:
                self._start(key[0], key[1], cid, probe)

    def _start(self, name: str, kind: ProbeKind, cid: ContainerID, probe: Obj) -> None:
        worker = self.worker
        container = self._specs()[name]
        initial = self._reported(name, cid, "ready") if kind == "readiness" else None

        async def run(timeout: float) -> tuple[bool, str]:
            if worker.sandbox is None:
                return False, "pod sandbox is gone"
            target = launch.target(worker.sandbox, container, cid, worker.pod_ip)
            return await run_handler(probe, runtime=worker.ctx.runtime, target=target,
                                     timeout=timeout)

        def on_result(kind: ProbeKind, name: str, ok: bool, message: str) -> None:
            self._results[(name, kind)] = (cid, ok)
            if not ok and kind in ("liveness", "startup"):
                grace = probe.get("terminationGracePeriodSeconds")
                worker.kill_requests[name] = (
                    cid, f"Container {name} failed {kind} probe, will be restarted",
                    float(grace) if grace is not None else None)
            worker.wake()

        def on_failure(kind: ProbeKind, name: str, message: str) -> None:
            text = f"{kind.capitalize()} probe failed: {message}"
            self._track(asyncio.create_task(worker.ctx.recorder.record(
                worker.pod, "Warning", "Unhealthy", text,
                field_path=launch.field_path(worker.pod, name))))

        if initial is not None:
            self._results[(name, kind)] = (cid, initial)
        pw = ProbeWorker(kind, name, probe, run=run, on_result=on_result,
                         on_failure=on_failure, initial=initial)
        self._workers[(name, kind)] = (cid, pw)
        pw.start()

    def _track(self, task: asyncio.Task[None]) -> None:
        # Keep a reference until done: the loop holds tasks only weakly.
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def stop_container(self, name: str) -> None:
        for key in [k for k in self._workers if k[0] == name]:
            _cid, pw = self._workers.pop(key)
            await pw.stop()

    async def stop_all(self) -> None:
        workers = [pw for _cid, pw in self._workers.values()]
        self._workers.clear()
        await asyncio.gather(*(pw.stop() for pw in workers))
