"""Fixtures for runtime tests: a real busybox image built by `kubelite image busybox`,
and a real runc runtime on a private root that is wiped, mounts, cgroups,
namespaces and processes included, after every test."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kubelite.runtime import cgroups, mounts
from kubelite.runtime.base import ContainerConfig, Image, SandboxConfig
from kubelite.runtime.images import OCIImageStore
from kubelite.runtime.runc import RuncRuntime


def _need(condition: bool, reason: str) -> None:
    if not condition:
        pytest.skip(reason)


def need_host() -> None:
    _need(os.geteuid() == 0, "containers need root")
    _need(shutil.which("runc") is not None, "runc is not installed")
    _need("overlay" in Path("/proc/filesystems").read_text(), "the kernel lacks overlayfs")
    _need(shutil.which("unshare") is not None, "util-linux unshare is not installed")


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need(Path("/bin/busybox").exists() or Path("/usr/bin/busybox").exists(),
          "busybox-static is not installed")
    out = tmp_path_factory.mktemp("images") / "busybox.tar"
    subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "busybox", "-o", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture
def root() -> Iterator[Path]:
    # Short, because unix socket paths under it are limited to 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="klrt-", dir="/tmp"))
    yield path
    mounts.unmount_all(str(path))
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def store(root: Path, busybox_archive: Path) -> OCIImageStore:
    s = OCIImageStore(root)
    await s.import_archive(str(busybox_archive))
    return s


@pytest.fixture
async def busybox(store: OCIImageStore) -> Image:
    image = await store.get("busybox")
    assert image is not None
    return image


@pytest.fixture
async def runtime(root: Path, store: OCIImageStore) -> AsyncIterator[RuncRuntime]:
    need_host()
    cgroup_root = f"/kubelite-test-{secrets.token_hex(4)}"
    rt = await RuncRuntime.open(root, images=store, cgroup_root=cgroup_root)
    try:
        yield rt
    finally:
        for sb in await rt.list_sandboxes():
            await rt.remove_sandbox(sb.id)
        for c in await rt.list_containers():
            await rt.remove_container(c.id)
        cgroups.remove(rt.cgroups, cgroup_root)


def pod(name: str = "pod", **options: object) -> SandboxConfig:
    return SandboxConfig(pod_uid=secrets.token_hex(8), name=name, namespace="default",
                         hostname=name, **options)  # type: ignore[arg-type]


def container(image: Image, *command: str, name: str = "c", **options: object) -> ContainerConfig:
    return ContainerConfig(name=name, image=image, command=command, **options)  # type: ignore[arg-type]
