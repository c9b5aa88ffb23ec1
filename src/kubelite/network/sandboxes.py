"""Pod sandboxes with a network: a ContainerRuntime that attaches every sandbox
it creates to the pod network (CNI ADD), detaches it before removal (CNI DEL),
and reports the pod's addresses in `Sandbox.ips`, as containerd's CRI plugin
does around its sandboxes. hostNetwork sandboxes pass through untouched.

Sandboxes found on the node (adopted after an agent restart) are checked once
(CNI CHECK); one whose network is broken is reported `notready`, so the pod
worker replaces it as kubelet replaces a sandbox that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

from kubelite.network.cni import CNIError
from kubelite.network.podnet import PodNetwork
from kubelite.runtime.base import ContainerRuntime, Sandbox, SandboxConfig, SandboxID
from kubelite.runtime.errors import SandboxError

log = logging.getLogger(__name__)

# CNI CHECKs of adopted sandboxes run this many at a time.
_CHECKS = 8


class NetworkedRuntime:
    """`runtime`, with pod sandboxes attached to `network`; everything else delegated."""

    def __init__(self, runtime: ContainerRuntime, network: PodNetwork, *,
                 wait_ready: float = 30.0) -> None:
        self.inner = runtime
        self.network = network
        self.wait_ready = wait_ready
        self._ips: dict[str, tuple[str, ...]] = {}
        self._checked: dict[str, bool] = {}
        self._limit = asyncio.Semaphore(_CHECKS)

    def __getattr__(self, name: str) -> Any:
        # The rest of the runtime (containers, exec, stats, ...) is the inner one's.
        return getattr(self.inner, name)

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox:
        if config.host_network:
            return await self.inner.create_sandbox(config)
        try:
            await self.network.wait_ready(self.wait_ready)
        except CNIError as e:
            raise SandboxError(str(e)) from e
        sandbox = await self.inner.create_sandbox(config)
        try:
            ips = await self.network.attach(
                sandbox.id, sandbox.netns_path, namespace=config.namespace, name=config.name,
                uid=config.pod_uid, ports=config.port_mappings, wait=self.wait_ready)
        except CNIError as e:
            with contextlib.suppress(SandboxError):
                await self.inner.remove_sandbox(sandbox.id)
            raise SandboxError(f'failed to set up sandbox network for pod "{config.name}": '
                               f"{e}") from e
        self._ips[sandbox.id] = ips
        self._checked[sandbox.id] = True
        return dataclasses.replace(sandbox, ips=ips)

    async def remove_sandbox(self, sandbox_id: SandboxID) -> None:
        netns = next((sb.netns_path for sb in await self.inner.list_sandboxes()
                      if sb.id == sandbox_id), None)
        if netns:
            try:
                await self.network.detach(sandbox_id, netns)
            except CNIError as e:
                # The sandbox goes regardless; the sweep releases what DEL left.
                log.warning("tearing down the network of sandbox %s: %s", sandbox_id, e)
        self._ips.pop(sandbox_id, None)
        self._checked.pop(sandbox_id, None)
        await self.inner.remove_sandbox(sandbox_id)

    async def list_sandboxes(self) -> list[Sandbox]:
        sandboxes = await self.inner.list_sandboxes()
        return list(await asyncio.gather(*(self._networked(sb) for sb in sandboxes)))

    async def _networked(self, sb: Sandbox) -> Sandbox:
        if not sb.netns_path:
            return sb
        if sb.id not in self._ips:
            self._ips[sb.id] = await self.network.ips(sb.id)
        if sb.state == "ready" and sb.id not in self._checked:
            async with self._limit:
                try:
                    await self.network.check(sb.id, sb.netns_path)
                    self._checked[sb.id] = True
                except CNIError as e:
                    log.warning("sandbox %s of pod %s/%s: network check failed: %s", sb.id,
                                sb.config.namespace, sb.config.name, e)
                    self._checked[sb.id] = False
        ready = sb.state == "ready" and self._checked.get(sb.id, True)
        return dataclasses.replace(sb, ips=self._ips[sb.id],
                                   state="ready" if ready else "notready")

    async def sweep_network(self) -> int:
        """Release the pod network of sandboxes that are no longer on the node."""
        async def live() -> set[str]:
            ids = {sb.id for sb in await self.inner.list_sandboxes()}
            for gone in set(self._ips) - ids:
                self._ips.pop(gone, None)
                self._checked.pop(gone, None)
            return set(ids)
        return await self.network.sweep(live)
