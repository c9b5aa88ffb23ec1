"""`kubelite up --registry IP:PORT`: a registry on the host (Debian's docker-registry
on loopback, the image pushed with skopeo) serves every node under its own address,
although nodes have no route off the machine."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, need_host
from tests.runtime.registry_fixture import Registry, have_registry_tools

pytestmark = pytest.mark.e2e


def test_a_registry_on_the_host_serves_every_node(tmp_path: Path) -> None:
    if reason := need_host() or have_registry_tools():
        pytest.skip(reason)
    archive = tmp_path / "busybox.tar"
    subprocess.run([sys.executable, "-m", "kubelite.cli.main", "image", "busybox", "-o",
                    str(archive)], check=True, capture_output=True)
    registry = Registry(tmp_path)
    asyncio.run(registry.start())
    cluster = Cluster(nodes=2, extra_args=("--registry", registry.host))
    try:
        asyncio.run(registry.push(archive, "team/tool:v1"))
        cluster.up()
        image = f"{registry.host}/team/tool:v1"
        for node in ("node-1", "node-2"):
            cluster.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pull-{node}"},
                "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "c", "image": image,
                                         "imagePullPolicy": "Always",
                                         "command": ["sleep", "3600"]}]}}))
        deadline = time.monotonic() + 90
        phases: list[str] = []
        while time.monotonic() < deadline:
            phases = [cluster.kubectl("get", "pod", f"pull-{n}", "-o",
                                      "jsonpath={.status.phase}") for n in ("node-1", "node-2")]
            if phases == ["Running", "Running"]:
                break
            time.sleep(0.5)
        assert phases == ["Running", "Running"], cluster.kubectl("describe", "pods")
        events = cluster.kubectl("get", "events", "--field-selector",
                                 "involvedObject.name=pull-node-2")
        assert f'Successfully pulled image "{image}"' in events
    finally:
        cluster.down()
        asyncio.run(registry.stop())
