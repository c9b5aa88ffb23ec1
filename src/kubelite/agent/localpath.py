"""The node's half of the `kubelite.io/local-path` provisioner
(controllers/localpath.py): announce where this node keeps local-path volumes,
and remove the directories of volumes that no longer exist (reclaim Delete).

The directory of a volume is created by the volume code when a pod first
mounts it, always after its PersistentVolume exists; so listing directories
before listing volumes can never remove the directory of a live volume.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from kubelite.api.registry import lookup
from kubelite.client import Client, ClientError
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

PVS = lookup("", "v1", "persistentvolumes")
NODES = lookup("", "v1", "nodes")
ROOT_ANNOTATION = "kubelite.io/local-path-root"


def _directories(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return [p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("pvc-")]


class LocalPathSweeper:
    def __init__(self, client: Client, *, node_name: str, root: Path,
                 interval: float = 10.0) -> None:
        self.client = client
        self.node_name = node_name
        self.root = root
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        assert NODES is not None
        await self.client.patch(NODES, self.node_name, {"metadata": {"annotations": {
            ROOT_ANNOTATION: str(self.root)}}})
        self._task = asyncio.create_task(self._loop(), name="local-path sweep")

    async def stop(self) -> None:
        if self._task is not None:
            await cancelled(self._task)
            self._task = None

    async def sweep(self) -> list[str]:
        """Remove directories whose volume is gone; returns their names."""
        assert PVS is not None
        found = await asyncio.to_thread(_directories, self.root)
        if not found:
            return []
        volumes = await self.client.list_all(PVS)
        live = {pv["metadata"]["name"] for pv in volumes.get("items") or []}
        gone = [name for name in found if name not in live]
        for name in gone:
            await asyncio.to_thread(shutil.rmtree, self.root / name, True)
            log.info("removed local-path volume directory %s", self.root / name)
        return gone

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except (ClientError, OSError) as e:
                log.warning("local-path sweep failed: %s", e)
            await asyncio.sleep(self.interval)
