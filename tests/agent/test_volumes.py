"""Volumes on disk: atomic payload swaps, configMap/secret/downwardAPI/projected,
hostPath checks, tmpfs for memory emptyDirs and secrets, teardown."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.agent import atomic, mounts
from kubelite.agent.volumes import VolumeError, VolumeManager
from tests.agent.fakes import FakeClient, FakeSource, make_pod

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs mounts need root")


def test_atomic_writer_swaps_versions(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert atomic.write_payload(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert (target / "a").read_bytes() == b"1"
    assert (target / "a").is_symlink() and os.readlink(target / "a") == "..data/a"
    assert ((target / "dir" / "b").stat().st_mode & 0o777) == 0o600
    first = os.readlink(target / "..data")
    assert not atomic.write_payload(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert atomic.write_payload(target, {"a": (b"changed", 0o644)})
    assert (target / "a").read_bytes() == b"changed"
    assert not (target / "dir").exists()
    assert not (target / first).exists()
    versions = [p for p in target.iterdir() if p.name.startswith("..") and p.is_dir()
                and not p.is_symlink()]
    assert len(versions) == 1


@pytest.mark.parametrize("path", ["../escape", "/abs", "a/../../b", "..hidden"])
def test_atomic_writer_refuses_escaping_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError):
        atomic.write_payload(tmp_path / "vol", {path: (b"x", 0o644)})


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[tuple[VolumeManager, FakeSource]]:
    source = FakeSource()
    source.put("configmaps", "default", "cfg", data={"app.conf": "x=1", "other": "y"},
               binaryData={"blob": base64.b64encode(b"\x00\x01").decode()})
    source.put("secrets", "default", "sec", data={"token": base64.b64encode(b"t0k").decode()})
    vm = VolumeManager(pods_dir=tmp_path / "pods", client=FakeClient(), source=source,
                       host_ip=lambda: "10.0.0.5",
                       allocatable=lambda: {"cpu": "2", "memory": "1Gi"})
    yield vm, source
    await vm.teardown("uid-p")
    assert not mounts.mountpoints_under(tmp_path)


def pod_with(*volumes: dict[str, Any]) -> dict[str, Any]:
    pod = make_pod("p", volumes=list(volumes))
    pod["metadata"]["labels"] = {"app": "web"}
    return pod


async def test_config_map_items_modes_and_updates(
        manager: tuple[VolumeManager, FakeSource]) -> None:
    vm, source = manager
    pod = pod_with({"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o640, "items": [
        {"key": "app.conf", "path": "conf/app.conf", "mode": 0o600}, {"key": "blob", "path": "b"}]}})
    vols = await vm.setup(pod)
    path = vols["cfg"].path
    assert vols["cfg"].read_only
    assert (path / "conf/app.conf").read_text() == "x=1"
    assert ((path / "conf/app.conf").stat().st_mode & 0o777) == 0o600
    assert ((path / "b").stat().st_mode & 0o777) == 0o640
    assert (path / "b").read_bytes() == b"\x00\x01"
    assert not (path / "other").exists()
    source.put("configmaps", "default", "cfg", data={"app.conf": "x=2"},
               binaryData={"blob": base64.b64encode(b"\x02").decode()})
    await vm.setup(pod)
    assert (path / "conf/app.conf").read_text() == "x=2"


@pytest.mark.parametrize(("volume", "message"), [
    ({"configMap": {"name": "absent"}}, 'configmap "absent" not found'),
    ({"configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
     "configmap references non-existent config key: nope"),
    ({"secret": {"secretName": "absent"}}, 'secret "absent" not found'),
    ({"hostPath": {"path": "/definitely/not/here", "type": "Directory"}},
     "hostPath type check failed: /definitely/not/here is not a directory"),
    ({"gitRepo": {"repository": "x"}}, "unsupported volume type gitRepo"),
], ids=["missing-configmap", "missing-key", "missing-secret", "hostpath-type", "unsupported"])
async def test_setup_failures_name_the_volume(manager: tuple[VolumeManager, FakeSource],
                                              volume: dict, message: str) -> None:
    vm, _ = manager
    with pytest.raises(ExceptionGroup) as err:
        await vm.setup(pod_with({"name": "v", **volume}))
    (e,) = err.value.exceptions
    assert isinstance(e, VolumeError)
    assert str(e) == f'MountVolume.SetUp failed for volume "v" : {message}'


async def test_optional_missing_config_map_is_empty(
        manager: tuple[VolumeManager, FakeSource]) -> None:
    vm, _ = manager
    vols = await vm.setup(pod_with({"name": "v", "configMap": {"name": "x", "optional": True}}))
    assert [p.name for p in vols["v"].path.iterdir() if not p.name.startswith("..")] == []


async def test_host_path_directory_or_create(manager: tuple[VolumeManager, FakeSource],
                                             tmp_path: Path) -> None:
    vm, _ = manager
    where = tmp_path / "host" / "data"
    vols = await vm.setup(pod_with({"name": "h", "hostPath": {"path": str(where),
                                                             "type": "DirectoryOrCreate"}}))
    assert vols["h"].path == where and where.is_dir()


async def test_downward_api_files(manager: tuple[VolumeManager, FakeSource]) -> None:
    vm, _ = manager
    vols = await vm.setup(pod_with({"name": "d", "downwardAPI": {"items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}))
    assert (vols["d"].path / "name").read_text() == "p"
    assert (vols["d"].path / "labels").read_text() == 'app="web"'


@needs_root
async def test_secret_and_projected_live_on_tmpfs(
        manager: tuple[VolumeManager, FakeSource]) -> None:
    vm, _ = manager
    vols = await vm.setup(pod_with(
        {"name": "s", "secret": {"secretName": "sec"}},
        {"name": "pr", "projected": {"sources": [
            {"secret": {"name": "sec", "items": [{"key": "token", "path": "t"}]}},
            {"configMap": {"name": "cfg", "items": [{"key": "other", "path": "o"}]}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}}))
    assert (vols["s"].path / "token").read_bytes() == b"t0k"
    assert mounts.is_mountpoint(vols["s"].path)
    assert {(vols["pr"].path / n).read_text() for n in ("t", "o", "ns")} == {"t0k", "y", "default"}


@needs_root
async def test_memory_empty_dir_is_sized_tmpfs_and_teardown_unmounts(
        manager: tuple[VolumeManager, FakeSource], tmp_path: Path) -> None:
    vm, _ = manager
    vols = await vm.setup(pod_with({"name": "m", "emptyDir": {"medium": "Memory",
                                                             "sizeLimit": "1Mi"}}))
    path = vols["m"].path
    assert mounts.is_mountpoint(path)
    stat = os.statvfs(path)
    assert stat.f_blocks * stat.f_frsize == 1024 * 1024
    await vm.teardown("uid-p")
    assert not mounts.is_mountpoint(path) and not (tmp_path / "pods" / "uid-p").exists()
