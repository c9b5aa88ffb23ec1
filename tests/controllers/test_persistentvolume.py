"""The PV binder against a real API server: matching, pre-binding, delayed binding,
release and reclaim, the default class."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, NotFound
from kubelite.controllers.persistentvolume import PersistentVolumeController, volume_fits
from tests.controllers.live_api import api_server, namespace, ns_name, running, until

__all__ = ["api_server", "ns_name"]

PVS = lookup("", "v1", "persistentvolumes")
PVCS = lookup("", "v1", "persistentvolumeclaims")
CLASSES = lookup("storage.k8s.io", "v1", "storageclasses")


def pv(name: str, size: str = "1Gi", *, cls: str = "", modes: tuple[str, ...] = ("ReadWriteOnce",),
       labels: dict | None = None, policy: str = "Retain", claim_ref: dict | None = None) -> dict:
    spec: dict = {"capacity": {"storage": size}, "accessModes": list(modes),
                  "hostPath": {"path": f"/tmp/{name}"}, "persistentVolumeReclaimPolicy": policy}
    if cls:
        spec["storageClassName"] = cls
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def pvc(name: str, size: str = "1Gi", *, cls: str | None = "",
        modes: tuple[str, ...] = ("ReadWriteOnce",), selector: dict | None = None,
        volume: str = "") -> dict:
    spec: dict = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if selector:
        spec["selector"] = selector
    if volume:
        spec["volumeName"] = volume
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}


@pytest.mark.parametrize(("volume", "claim", "fits"), [
    (pv("a"), pvc("c"), True),
    (pv("a", "500Mi"), pvc("c", "1Gi"), False),
    (pv("a", cls="fast"), pvc("c"), False),
    (pv("a", modes=("ReadWriteOnce",)), pvc("c", modes=("ReadWriteMany",)), False),
    (pv("a", modes=("ReadWriteOnce", "ReadOnlyMany")), pvc("c", modes=("ReadOnlyMany",)), True),
    (pv("a", labels={"tier": "gold"}), pvc("c", selector={"matchLabels": {"tier": "gold"}}), True),
    (pv("a", labels={"tier": "iron"}), pvc("c", selector={"matchLabels": {"tier": "gold"}}), False),
], ids=["same size and mode", "too small", "other class", "missing access mode",
        "a subset of modes", "selector matches", "selector does not match"])
def test_volume_fits(volume: dict, claim: dict, fits: bool) -> None:
    assert volume_fits(volume, claim) is fits


async def _phase(client: Client, res, name: str, ns: str | None = None) -> str:
    obj = await client.get(res, name, ns)
    return (obj.get("status") or {}).get("phase", "")


async def test_binds_the_smallest_fit_then_releases_and_deletes(
        api_server: Path, ns_name: str) -> None:
    tag = secrets.token_hex(3)
    big, small, tiny = f"big-{tag}", f"small-{tag}", f"tiny-{tag}"
    async with running(api_server, PersistentVolumeController) as client:
        ns = await namespace(client, ns_name)
        try:
            await client.create(PVS, pv(big, "10Gi", policy="Delete"))
            await client.create(PVS, pv(small, "2Gi", policy="Delete"))
            await client.create(PVS, pv(tiny, "100Mi"))
            await until(lambda: _is(client, PVS, small, None, "Available"))
            await client.create(PVCS, pvc("claim", "1Gi"), ns)
            await until(lambda: _is(client, PVCS, "claim", ns, "Bound"))
            claim = await client.get(PVCS, "claim", ns)
            assert claim["spec"]["volumeName"] == small
            assert claim["status"]["capacity"] == {"storage": "2Gi"}
            assert claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
            volume = await client.get(PVS, small)
            assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
            assert volume["status"]["phase"] == "Bound"
            await client.delete(PVCS, "claim", ns)
            await until(lambda: _gone(client, small))
            assert await _phase(client, PVS, big) == "Available"
        finally:
            await _delete_volumes(client, big, small, tiny)


async def test_retain_keeps_a_released_volume(api_server: Path, ns_name: str) -> None:
    name = f"kept-{secrets.token_hex(3)}"
    async with running(api_server, PersistentVolumeController) as client:
        ns = await namespace(client, ns_name)
        try:
            await client.create(PVS, pv(name))
            await client.create(PVCS, pvc("claim", "1Gi", volume=name), ns)
            await until(lambda: _is(client, PVCS, "claim", ns, "Bound"))
            await client.delete(PVCS, "claim", ns)
            await until(lambda: _is(client, PVS, name, None, "Released"))
        finally:
            await _delete_volumes(client, name)


async def test_a_volume_pre_bound_to_a_claim_goes_to_that_claim(
        api_server: Path, ns_name: str) -> None:
    name = f"reserved-{secrets.token_hex(3)}"
    async with running(api_server, PersistentVolumeController) as client:
        ns = await namespace(client, ns_name)
        try:
            await client.create(PVS, pv(name, "5Gi", claim_ref={"namespace": ns, "name": "mine"}))
            await until(lambda: _is(client, PVS, name, None, "Available"))
            await client.create(PVCS, pvc("other", "1Gi"), ns)
            await client.create(PVCS, pvc("mine", "1Gi"), ns)
            await until(lambda: _is(client, PVCS, "mine", ns, "Bound"))
            assert await _phase(client, PVCS, "other", ns) == "Pending"
        finally:
            await _delete_volumes(client, name)


async def test_wait_for_first_consumer_and_the_default_class(api_server: Path, ns_name: str) -> None:
    cls = f"late-{secrets.token_hex(3)}"
    name = f"late-{secrets.token_hex(3)}"
    async with running(api_server, PersistentVolumeController) as client:
        ns = await namespace(client, ns_name)
        try:
            await client.create(CLASSES, {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": cls, "annotations": {
                    "storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer"})
            await client.create(PVS, pv(name, cls=cls))
            await client.create(PVCS, pvc("claim", cls=None), ns)

            async def defaulted() -> bool:
                claim = await client.get(PVCS, "claim", ns)
                return claim["spec"].get("storageClassName") == cls
            await until(defaulted)
            await until(lambda: _is(client, PVCS, "claim", ns, "Pending"))
            assert not (await client.get(PVCS, "claim", ns))["spec"].get("volumeName")
        finally:
            await _delete_volumes(client, name)
            try:
                await client.delete(CLASSES, cls)
            except NotFound:
                pass


async def _is(client: Client, res, name: str, ns: str | None, phase: str) -> bool:
    return await _phase(client, res, name, ns) == phase


async def _gone(client: Client, name: str) -> bool:
    try:
        await client.get(PVS, name)
    except NotFound:
        return True
    return False


async def _delete_volumes(client: Client, *names: str) -> None:
    for name in names:
        try:
            await client.delete(PVS, name)
        except NotFound:
            pass
