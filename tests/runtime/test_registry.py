"""Pulling over the OCI distribution API from a real docker-registry on loopback."""

from __future__ import annotations

import json
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kubelite.runtime.base import RegistryAuth
from kubelite.runtime.errors import ImagePullError
from kubelite.runtime.images import OCIImageStore

from .registry_fixture import Registry, have_registry_tools

RegistryFactory = Callable[..., "Registry"]


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    if reason := have_registry_tools():
        pytest.skip(reason)
    started: list[Registry] = []

    async def start(**options: object) -> Registry:
        directory = tmp_path / f"registry{len(started)}"
        directory.mkdir()
        reg = Registry(directory, **options)  # type: ignore[arg-type]
        started.append(reg)
        await reg.start()
        return reg
    yield start
    for reg in started:
        await reg.stop()


def archive_digest(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        return json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]  # type: ignore[arg-type]


async def test_anonymous_pull_over_http(registry: Callable[..., object], busybox_archive: Path,
                                        root: Path) -> None:
    reg: Registry = await registry()  # type: ignore[misc]
    await reg.push(busybox_archive, "library/busybox:v1")
    store = OCIImageStore(root)
    image = await store.ensure(f"{reg.host}/library/busybox:v1", pull_policy="IfNotPresent")
    assert image.digest == archive_digest(busybox_archive)
    assert image.repo_tags == (f"{reg.host}/library/busybox:v1",)
    assert image.cmd == ("sh",)
    [layer] = await store.lease("probe", image)
    assert Path(layer, "bin/busybox").is_file()
    # Always goes to the registry again; a digest reference pins the same image.
    again = await store.ensure(f"{reg.host}/library/busybox:v1", pull_policy="Always")
    assert again.digest == image.digest
    pinned = await store.ensure(f"{reg.host}/library/busybox@{image.digest}",
                                pull_policy="IfNotPresent")
    assert pinned.config_digest == image.config_digest


@pytest.mark.parametrize("ref", ["library/busybox:nope", "library/absent:v1"],
                         ids=["missing-tag", "missing-repository"])
async def test_missing_image_is_a_pull_error(registry: Callable[..., object],
                                             busybox_archive: Path, root: Path, ref: str) -> None:
    reg: Registry = await registry()  # type: ignore[misc]
    await reg.push(busybox_archive, "library/busybox:v1")
    with pytest.raises(ImagePullError, match="not found|unknown"):
        await OCIImageStore(root).ensure(f"{reg.host}/{ref}", pull_policy="IfNotPresent")


async def test_unreachable_registry_is_a_pull_error(root: Path) -> None:
    from tests.ports import free_port
    with pytest.raises(ImagePullError, match="unreachable"):
        await OCIImageStore(root).ensure(f"127.0.0.1:{free_port()}/x:v1", pull_policy="Always")


@pytest.mark.parametrize("scheme", ["basic", "token"])
async def test_pull_with_credentials(registry: Callable[..., object], busybox_archive: Path,
                                     root: Path, scheme: str) -> None:
    reg: Registry = await registry(auth=scheme)  # type: ignore[misc]
    await reg.push(busybox_archive, "team/box:v1")
    store = OCIImageStore(root)
    ref = f"{reg.host}/team/box:v1"
    with pytest.raises(ImagePullError, match="unauthorized"):
        await store.ensure(ref, pull_policy="IfNotPresent")
    with pytest.raises(ImagePullError, match="unauthorized"):
        await store.ensure(ref, pull_policy="IfNotPresent",
                           auth=[RegistryAuth(username=reg.user, password="wrong")])
    # Like imagePullSecrets: credentials are tried in order until one works.
    image = await store.ensure(ref, pull_policy="IfNotPresent", auth=[
        RegistryAuth(username="someone", password="else"),
        RegistryAuth(username=reg.user, password=reg.password)])
    assert image.digest == archive_digest(busybox_archive)
    if scheme == "token":
        assert reg.token is not None
        assert reg.token.requests[-1] == {"scope": "repository:team/box:pull",
                                          "service": "kubelite-reg"}


async def test_pull_over_https(registry: Callable[..., object], busybox_archive: Path,
                               root: Path) -> None:
    reg: Registry = await registry(tls=True)  # type: ignore[misc]
    await reg.push(busybox_archive, "library/busybox:v1")
    ref = f"{reg.host}/library/busybox:v1"
    with pytest.raises(ImagePullError, match="certificate"):
        await OCIImageStore(root).ensure(ref, pull_policy="Always")
    store = OCIImageStore(root, ca_file=str(reg.dir / "registry.crt"))
    image = await store.ensure(ref, pull_policy="Always")
    assert image.digest == archive_digest(busybox_archive)


async def test_a_corrupt_blob_is_refused(registry: Callable[..., object], busybox_archive: Path,
                                         root: Path) -> None:
    reg: Registry = await registry()  # type: ignore[misc]
    await reg.push(busybox_archive, "library/busybox:v1")
    with tarfile.open(busybox_archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile(  # type: ignore[arg-type]
            "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
    layer_hex = manifest["layers"][0]["digest"].split(":")[1]
    [data] = (reg.dir / "data").rglob(f"blobs/sha256/{layer_hex[:2]}/{layer_hex}/data")
    data.write_bytes(data.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ImagePullError, match="does not match its digest"):
        await OCIImageStore(root).ensure(f"{reg.host}/library/busybox:v1",
                                         pull_policy="IfNotPresent")
