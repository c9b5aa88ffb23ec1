"""`kubelite image load`: one archive into the image store of every node of a cluster,
read from the cluster's data directory as `kubelite up` wrote it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubelite.cluster.layout import make_layout
from kubelite.runtime.build import build_image_archive
from kubelite.runtime.images import OCIImageStore

KUBELITE = [sys.executable, "-m", "kubelite.cli.main"]


def _cluster(data_dir: Path, nodes: int) -> None:
    data_dir.mkdir()
    make_layout(data_dir, nodes=nodes, port=6443, cluster_cidr="10.244.0.0/16",
                service_cidr="10.96.0.0/16", http_port=80, https_port=443).save(ready=True)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    (context / "www").mkdir(parents=True)
    (context / "www" / "index.html").write_text("hello\n")
    out = tmp_path / "web.tar"
    build_image_archive(out, tag="kubelite.local/web:1", context=context,
                        cmd=["httpd", "-f", "-p", "8080", "-h", "/www"])
    return out


async def test_every_node_of_the_cluster_gets_the_image(tmp_path: Path, archive: Path) -> None:
    data_dir = tmp_path / "data"
    _cluster(data_dir, 3)
    result = subprocess.run([*KUBELITE, "image", "load", str(archive), "--data-dir",
                             str(data_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"node-{k}: loaded kubelite.local/web:1" for k in (1, 2, 3)]
    for k in (1, 2, 3):
        image = await OCIImageStore(data_dir / "nodes" / f"node-{k}").get("kubelite.local/web:1")
        assert image is not None and image.cmd[0] == "httpd"


async def test_loading_twice_keeps_one_image(tmp_path: Path, archive: Path) -> None:
    data_dir = tmp_path / "data"
    _cluster(data_dir, 1)
    for _ in range(2):
        result = subprocess.run([*KUBELITE, "image", "load", str(archive), "--tag",
                                 "web:dev", "--data-dir", str(data_dir)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    images = await OCIImageStore(data_dir / "nodes" / "node-1").list()
    assert [i.repo_tags for i in images] == [("docker.io/library/web:dev",)]


@pytest.mark.parametrize("case", ["no cluster", "no file", "not an archive"])
def test_a_clear_error(tmp_path: Path, archive: Path, case: str) -> None:
    data_dir = tmp_path / "data"
    if case != "no cluster":
        _cluster(data_dir, 2)
    file = {"no file": tmp_path / "missing.tar", "not an archive": tmp_path / "junk.tar"}.get(
        case, archive)
    if case == "not an archive":
        file.write_text("not a tarball")
    result = subprocess.run([*KUBELITE, "image", "load", str(file), "--data-dir",
                             str(data_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    want = {"no cluster": f"error: no `kubelite up` cluster in {data_dir}",
            "no file": f"error: {file}: no such file",
            "not an archive": "error: node-1: cannot read image archive"}[case]
    assert result.stderr.startswith(want), result.stderr
