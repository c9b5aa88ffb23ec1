"""The image store: archive import, the `kubelite image` command, removal and GC."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kubelite.cli.main import main
from kubelite.runtime.errors import ImageError, ImageNotPresent, InvalidImageName
from kubelite.runtime.images import OCIImageStore


def kubelite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubelite.cli.main", *args],
                          capture_output=True, text=True)


def test_busybox_archive_is_a_small_deterministic_oci_layout(busybox_archive: Path,
                                                             tmp_path: Path) -> None:
    again = tmp_path / "again.tar"
    assert kubelite("image", "busybox", "-o", str(again)).returncode == 0
    assert again.read_bytes() == busybox_archive.read_bytes()
    with tarfile.open(busybox_archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert "oci-layout" in tar.getnames()
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    assert busybox_archive.stat().st_size < 3 << 20


async def test_import_gives_config_and_unpacked_layer(store: OCIImageStore) -> None:
    image = await store.get("busybox")
    assert image is not None
    assert image.ref == "docker.io/library/busybox:latest"
    assert image.cmd == ("sh",)
    assert any(e.startswith("PATH=") for e in image.env)
    [layer] = await store.lease("probe", image)
    assert Path(layer, "bin/busybox").is_file()
    assert Path(layer, "bin/sh").is_symlink()
    assert Path(layer, "etc/passwd").read_text().startswith("root:x:0:0:")
    assert (Path(layer) / "tmp").stat().st_mode & 0o1777 == 0o1777


async def test_docker_archive_imports_to_the_same_image(root: Path, busybox_archive: Path,
                                                        tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    docker = tmp_path / "docker.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{busybox_archive}",
                    f"docker-archive:{docker}:example.com/team/box:v1"], check=True)
    store = OCIImageStore(root)
    [image] = await store.import_archive(str(docker))
    [oci] = await store.import_archive(str(busybox_archive))
    assert image.repo_tags == ("example.com/team/box:v1",)
    assert image.config_digest == oci.config_digest
    # One unpacked layer serves both images.
    assert len(list((root / "images" / "layers").iterdir())) == 1


async def test_tag_names_and_a_bare_tag_needs_one(store: OCIImageStore, busybox_archive: Path,
                                                  tmp_path: Path) -> None:
    [image] = await store.import_archive(str(busybox_archive), tag="mine:v2")
    assert image.repo_tags == ("docker.io/library/busybox:latest", "docker.io/library/mine:v2")
    assert (await store.get("mine:v2")) is not None
    assert (await store.get(image.config_digest)) is not None
    assert (await store.get(f"mine@{image.digest}")) is not None
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    bare = tmp_path / "bare.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{busybox_archive}",
                    f"oci-archive:{bare}:latest"], check=True)
    with pytest.raises(ImageError, match="--tag"):
        await store.import_archive(str(bare))


async def test_pull_policy_never_and_bad_names(store: OCIImageStore) -> None:
    with pytest.raises(ImageNotPresent):
        await store.ensure("absent:v1", pull_policy="Never")
    with pytest.raises(InvalidImageName):
        await store.ensure("Not A Name", pull_policy="IfNotPresent")
    image = await store.ensure("busybox", pull_policy="IfNotPresent")
    assert image.ref == "docker.io/library/busybox:latest"


async def test_remove_and_gc_free_what_no_image_uses(root: Path, store: OCIImageStore,
                                                     busybox_archive: Path) -> None:
    await store.import_archive(str(busybox_archive), tag="other:v1")
    await store.remove("busybox")
    assert await store.get("busybox") is None
    assert await store.get("other:v1") is not None  # same manifest, still named
    assert len(list((root / "images" / "layers").iterdir())) == 1
    with pytest.raises(ImageError):
        await store.remove("busybox")
    image = await store.get("other:v1")
    assert image is not None
    assert await store.garbage_collect({"docker.io/library/other:v1"}) == 0
    freed = await store.garbage_collect(set())
    assert freed > 1 << 20
    assert await store.list() == []
    assert list((root / "images" / "layers").iterdir()) == []
    assert list((root / "images" / "blobs" / "sha256").iterdir()) == []


async def test_gc_keeps_layers_a_container_stacks(root: Path, store: OCIImageStore) -> None:
    image = await store.get("busybox")
    assert image is not None
    await store.lease("container-1", image)
    await store.garbage_collect(set())
    assert await store.get("busybox") is not None
    await store.release("container-1")
    await store.garbage_collect(set())
    assert await store.get("busybox") is None
    assert list((root / "images" / "layers").iterdir()) == []


def test_cli_import_ls_rm(root: Path, busybox_archive: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        code = main(["image", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("import", str(busybox_archive), "--root", str(root))
    assert code == 0, err
    assert "docker.io/library/busybox:latest" in out
    _, out, _ = run("ls", "--root", str(root))
    assert out.splitlines()[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert out.splitlines()[1].split()[:2] == ["docker.io/library/busybox", "latest"]
    assert run("rm", "busybox", "--root", str(root))[0] == 0
    assert len(run("ls", "--root", str(root))[1].splitlines()) == 1
    code, _, err = run("rm", "busybox", "--root", str(root))
    assert code == 1 and "not found" in err
    code, _, err = run("import", "/etc/hostname", "--root", str(root))
    assert code == 1 and "cannot read image archive" in err
