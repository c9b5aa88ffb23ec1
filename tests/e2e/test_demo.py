"""The README's `make run` path on a real cluster: `kubelite up`, examples/demo/
deployed by its script (images built here, loaded into the nodes), pages served
through the Ingress, kubectl with the printed kubeconfig, then `kubelite down`
leaving nothing of the cluster on the host."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, need_host

pytestmark = pytest.mark.e2e
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def counts(base: str, n: int) -> dict[str, list[int]]:
    """pod -> the counts it answered, over n requests through the Ingress."""
    seen: dict[str, list[int]] = {}
    for _ in range(n):
        match = re.search(r"(counter-\d) has counted (\d+)", get(base + "/counter/"))
        assert match, "unexpected counter page"
        seen.setdefault(match.group(1), []).append(int(match.group(2)))
    return seen


def host_state(name: str, data_dir: Path) -> dict[str, list[str]]:
    def lines(*argv: str) -> list[str]:
        out = subprocess.run(argv, capture_output=True, text=True).stdout
        return sorted(line for line in out.splitlines() if name in line)
    processes = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(data_dir) in cmdline:
            processes.append(cmdline)
    return {"netns": lines("ip", "netns"), "links": lines("ip", "-o", "link"),
            "forward": lines("iptables", "-S", "FORWARD"),
            "mounts": sorted(m for m in Path("/proc/mounts").read_text().splitlines()
                             if str(data_dir) in m),
            "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/kubelite-{name}")),
            "processes": processes}


def test_make_run_path_serves_the_demo_and_down_leaves_nothing() -> None:
    if reason := need_host():
        pytest.skip(reason)
    cluster = Cluster(nodes=3)
    try:
        cluster.up()
        data_dir = cluster.data_dir
        env = {**os.environ, "KUBELITE_DATA_DIR": str(data_dir),
               "KUBELITE_HTTP_PORT": str(cluster.http_port),
               "KUBELITE": str(Path(sys.executable).parent / "kubelite"), "HOME": "/root"}
        deployed = subprocess.run([str(DEMO / "deploy.sh")], env=env, capture_output=True,
                                  text=True, timeout=300)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert f"http://127.0.0.1:{cluster.http_port}/" in deployed.stdout
        base = f"http://127.0.0.1:{cluster.http_port}"
        # The web page names the pod and node that served it, and shows the
        # ConfigMap's message and the Secret's presence.
        pods = set()
        for _ in range(12):
            page = get(base + "/")
            assert "This page comes from a ConfigMap" in page
            assert "set, 19 characters" in page
            pods.add(re.search(r"<td>pod</td><td><b>([^<]+)</b>", page).group(1))  # type: ignore[union-attr]
        assert len(pods) >= 2
        # The counter keeps its count in its volume across the pod's deletion: each pod
        # goes on from where it was (a fresh volume would count from 1 again).
        before = counts(base, 8)
        cluster.kubectl("-n", "demo", "delete", "pod", "counter-0", "counter-1")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = cluster.kubectl("-n", "demo", "get", "pods", "-l", "app=counter", "-o",
                                    "jsonpath={.items[*].status.containerStatuses[0].ready}")
            if ready.split() == ["true", "true"]:
                break
            time.sleep(0.5)
        after = counts(base, 8)
        both = before.keys() & after.keys()
        assert both and all(min(after[p]) > max(before[p]) for p in both), (before, after)
        # kubectl works with the kubeconfig `up` printed.
        assert "node-3" in cluster.kubectl("get", "nodes")
    finally:
        # Shown by pytest only when the test failed: what the cluster's processes logged.
        print(cluster.log_tail(200))
        info = dict(cluster.info)
        cluster.down()
    if info:
        assert host_state(info["name"], cluster.data_dir) == {
            "netns": [], "links": [], "forward": [], "mounts": [], "cgroups": [],
            "processes": []}
