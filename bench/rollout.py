"""Deployments at 100 replicas: the control plane's rollout on hollow nodes, and
create -> 100 Ready pods on a real `kubelite up` cluster.

Simulated (default): a real `kubelite server` with its controllers and scheduler,
hollow nodes (kubelite.scheduler.simulate) that report their pods Running and
Ready; measures the time until a 100-replica Deployment is Available, the time
to roll it to a new image, and the controller manager's CPU time per 1,000 pod
events seen during the rollout.

Real (--real): `kubelite up --nodes 3`, then `kubectl create deployment
--replicas=100` of busybox until 100 pods are Ready (the issue's anchor: Docker
Swarm runs 100 replicas on 2 worker hosts here in 5.7 s); `down --purge` after.
Needs root, runc and the CNI plugins.

    .venv/bin/python bench/rollout.py [--replicas 100] [--nodes 10] [--real]

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import api as apibench  # noqa: E402
from kubelite.client import Client, load_kubeconfig  # noqa: E402
from kubelite.client.api import find_resource  # noqa: E402
from kubelite.scheduler.simulate import HollowNodes, HollowSpec  # noqa: E402

KUBELITE = [sys.executable, "-m", "kubelite.cli.main"]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def deployment(replicas: int, image: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "roll"}},
                     "template": {"metadata": {"labels": {"app": "roll"}}, "spec": {
                         "containers": [{"name": "c", "image": image, "resources": {
                             "requests": {"cpu": "10m", "memory": "8Mi"}}}]}}}}


def complete(d: dict[str, Any], replicas: int) -> bool:
    st = d.get("status") or {}
    return (st.get("observedGeneration") == d["metadata"].get("generation")
            and st.get("updatedReplicas") == replicas and st.get("readyReplicas") == replicas
            and st.get("replicas") == replicas and st.get("availableReplicas") == replicas)


async def wait_complete(client: Client, replicas: int, timeout: float = 300) -> float:
    res = find_resource("deployments")
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if complete(await client.get(res, "roll", "default"), replicas):
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise TimeoutError("the rollout did not complete")


async def simulated(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubelite-roll-") as tmp:
        data = Path(tmp) / "data"
        port = apibench.free_port()
        server = subprocess.Popen([*KUBELITE, "server", "--data-dir", str(data), "--listen",
                                   f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                  stderr=open(Path(tmp) / "server.log", "wb"))
        try:
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    if (data / "kubeconfig").exists():
                        break
                except OSError:
                    pass
                await asyncio.sleep(0.05)
            config = await asyncio.to_thread(load_kubeconfig, data / "kubeconfig")
            spec = HollowSpec(count=args.nodes, cpu="32", memory="64Gi", pods=110,
                              run_pods=True)
            async with Client(config, user_agent="bench-rollout") as client, \
                    HollowNodes(client, spec):
                await asyncio.sleep(2.0)
                manager = next(int(p) for p in Path(
                    f"/proc/{server.pid}/task/{server.pid}/children").read_text().split())
                events = 0

                async def count_events() -> None:
                    nonlocal events
                    async for _ in client.watch(find_resource("pods"), "default",
                                                allow_bookmarks=False):
                        events += 1
                watcher = asyncio.create_task(count_events())
                res = find_resource("deployments")
                await client.create(res, deployment(args.replicas, "busybox:1"), "default")
                create_s = await wait_complete(client, args.replicas)
                events_before, cpu_before = events, cpu_seconds(manager)
                await client.patch(res, "roll", {"spec": {"template": {"spec": {"containers": [
                    {"name": "c", "image": "busybox:2"}]}}}}, namespace="default",
                    patch_type="strategic")
                roll_s = await wait_complete(client, args.replicas)
                pod_events = events - events_before
                cpu = cpu_seconds(manager) - cpu_before
                watcher.cancel()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
    return {"hollow_nodes": args.nodes, "replicas": args.replicas,
            "create_to_available_s": round(create_s, 2), "rollout_s": round(roll_s, 2),
            "rollout_pod_events": pod_events,
            "controller_cpu_ms_per_1000_pod_events": round(cpu / max(pod_events, 1) * 1e6, 1)}


def kubectl(kubeconfig: Path, *args: str) -> str:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], check=True,
                          capture_output=True, text=True).stdout


def real(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="klroll-", dir="/tmp"))
    data = base / "data"
    ports = [str(apibench.free_port()) for _ in range(3)]
    try:
        subprocess.run([*KUBELITE, "up", "--nodes", "3", "--data-dir", str(data), "--port",
                        ports[0], "--http-port", ports[1], "--https-port", ports[2]],
                       check=True, capture_output=True)
        kubeconfig = data / "kubeconfig"
        started = time.perf_counter()
        # A tag other than latest: policy IfNotPresent, the image being on every node.
        kubectl(kubeconfig, "create", "deployment", "roll", "--image=busybox:stable",
                f"--replicas={args.replicas}", "--", "sleep", "3600")
        while True:
            ready = json.loads(kubectl(kubeconfig, "get", "deployment", "roll", "-o", "json"))
            if (ready.get("status") or {}).get("readyReplicas") == args.replicas:
                break
            if time.perf_counter() - started > 300:
                raise TimeoutError("the pods did not become Ready")
            time.sleep(0.1)
        took = time.perf_counter() - started
    finally:
        subprocess.run([*KUBELITE, "down", "--purge", "--data-dir", str(data)],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    return {"real_nodes": 3, "real_replicas": args.replicas,
            "real_create_to_ready_s": round(took, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=10, help="hollow nodes")
    parser.add_argument("--real", action="store_true",
                        help="also measure create -> Ready on a real 3-node cluster")
    args = parser.parse_args()
    result = asyncio.run(simulated(args))
    if args.real:
        result |= real(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
