"""The local-path provisioner with the PV binder against a real API server, and the
agent's sweeper on a real directory."""

from __future__ import annotations

import secrets
from pathlib import Path

from kubelite.agent.localpath import LocalPathSweeper
from kubelite.api.registry import lookup
from kubelite.client import Client, NotFound
from kubelite.controllers.localpath import CLASS_NAME, ROOT_ANNOTATION, LocalPathProvisioner
from kubelite.controllers.persistentvolume import PersistentVolumeController
from tests.controllers.live_api import (
    api_server,
    delete_nodes,
    make_node,
    namespace,
    ns_name,
    running,
    until,
)

__all__ = ["api_server", "ns_name"]

PVS = lookup("", "v1", "persistentvolumes")
PVCS = lookup("", "v1", "persistentvolumeclaims")
NODES = lookup("", "v1", "nodes")
CLASSES = lookup("storage.k8s.io", "v1", "storageclasses")


async def test_provisions_on_the_selected_node_and_cleans_up_on_delete(
        api_server: Path, ns_name: str, tmp_path: Path) -> None:
    node = f"lp-{secrets.token_hex(3)}"
    root = tmp_path / "local-path"
    async with running(api_server, LocalPathProvisioner, PersistentVolumeController) as client:
        ns = await namespace(client, ns_name)
        await make_node(client, node)
        sweeper = LocalPathSweeper(client, node_name=node, root=root, interval=3600)
        try:
            await sweeper.start()
            assert (await client.get(NODES, node))["metadata"]["annotations"][ROOT_ANNOTATION] == \
                str(root)
            sc = await until(lambda: client.get(CLASSES, CLASS_NAME))
            assert sc["provisioner"] == "kubelite.io/local-path"
            assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
            assert sc["reclaimPolicy"] == "Delete"
            assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == \
                "true"
            await client.create(PVCS, {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "64Mi"}}}}, ns)
            # The default class is assigned, and nothing happens before the scheduler picks.
            await until(lambda: _claim_field(client, ns, "storageClassName", CLASS_NAME))
            claim = await client.get(PVCS, "data", ns)
            assert not claim["spec"].get("volumeName")
            # The scheduler's VolumeBinding marks the claim with the chosen node.
            await client.patch(PVCS, "data", {"metadata": {"annotations": {
                "volume.kubernetes.io/selected-node": node}}}, namespace=ns)
            pv_name = f"pvc-{claim['metadata']['uid']}"
            await until(lambda: _claim_field(client, ns, "volumeName", pv_name))
            pv = await client.get(PVS, pv_name)
            assert pv["spec"]["hostPath"] == {"path": f"{root}/{pv_name}", "type": "DirectoryOrCreate"}
            assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0][
                "matchExpressions"][0]["values"] == [node]
            assert pv["spec"]["capacity"] == {"storage": "64Mi"}
            assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == \
                "kubelite.io/local-path"
            # A pod's mount would create the directory; a stray one belongs to no volume.
            (root / pv_name).mkdir(parents=True)
            (root / pv_name / "file").write_text("data")
            (root / "pvc-stray").mkdir()
            assert await sweeper.sweep() == ["pvc-stray"]
            assert (root / pv_name / "file").read_text() == "data"

            await client.delete(PVCS, "data", ns)
            await until(lambda: _volume_gone(client, pv_name))
            assert await sweeper.sweep() == [pv_name]
            assert not (root / pv_name).exists()
        finally:
            await sweeper.stop()
            await delete_nodes(client, [node])


async def _claim_field(client: Client, ns: str, field: str, value: str) -> bool:
    return (await client.get(PVCS, "data", ns))["spec"].get(field) == value


async def _volume_gone(client: Client, name: str) -> bool:
    try:
        await client.get(PVS, name)
    except NotFound:
        return True
    return False
