"""Pod startup latency on a real node agent: create -> Running, image present.

A real `kubelite server` (controllers and scheduler off: the pods name their node,
so this measures the agent alone) and a real `kubelite agent` with runc. Reports
p50/p99 for one pod at a time, the time until 50 pods created at once are all
Running, the agent's RSS with them, and the overhead over a bare `runc run` of the
same image (bench/runc_baseline.py). Needs root and runc. Last line: one JSON object.

    .venv/bin/python bench/pods.py [--runs 20] [--parallel 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubelite.client import Client, load_kubeconfig
from kubelite.client.api import find_resource

NODE = "bench-node"
KUBELITE = [sys.executable, "-m", "kubelite.cli.main"]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(p99 * 1000, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 0, "containers": [{
                "name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"]}]}}


class Running:
    """One watch on all pods, resolving a future per pod when it is first seen Running."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        res = find_resource("pods")
        async for _, obj in self.client.watch(res, "default", allow_bookmarks=False):
            name = obj["metadata"]["name"]
            fut = self.waiting.get(name)
            if fut and not fut.done() and (obj.get("status") or {}).get("phase") == "Running":
                fut.set_result(time.perf_counter())

    def expect(self, name: str) -> asyncio.Future[float]:
        fut = self.waiting[name] = asyncio.get_running_loop().create_future()
        return fut


async def start_pods(client: Client, running: Running, names: list[str]) -> list[float]:
    res = find_resource("pods")
    started = time.perf_counter()
    futures = [running.expect(n) for n in names]
    await asyncio.gather(*(client.create(res, pod(n), "default") for n in names))
    done = await asyncio.wait_for(asyncio.gather(*futures), 120)
    return [t - started for t in done]


async def delete_all(client: Client) -> None:
    res = find_resource("pods")
    pods = (await client.list(res, "default")).get("items") or []
    await asyncio.gather(*(client.delete(res, p["metadata"]["name"], "default")
                           for p in pods))
    while (await client.list(res, "default")).get("items"):
        await asyncio.sleep(0.2)


def wait_for(path: Path, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            if path.exists():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    data, root = tmp / "server", tmp / "agent"
    port, agent_port = free_port(), free_port()
    cgroup_root = f"/kubelite-bench-{secrets.token_hex(4)}"
    archive = tmp / "busybox.tar"
    subprocess.run([*KUBELITE, "image", "busybox", "-o", str(archive)], check=True)
    subprocess.run([*KUBELITE, "image", "import", str(archive), "--root", str(root)],
                   check=True, capture_output=True)
    server = subprocess.Popen([*KUBELITE, "server", "--data-dir", str(data), "--listen",
                               f"127.0.0.1:{port}", "--disable-controllers"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "wb"))
    agent: subprocess.Popen[bytes] | None = None
    try:
        wait_for(data / "kubeconfig", port)
        agent = subprocess.Popen(
            [*KUBELITE, "agent", "--kubeconfig", str(data / "kubeconfig"), "--node-name", NODE,
             "--root", str(root), "--port", str(agent_port), "--address", "127.0.0.1",
             "--node-ip", "127.0.0.1", "--cgroup-root", cgroup_root,
             "--cluster-ca-cert", str(data / "pki" / "ca.crt"),
             "--cluster-ca-key", str(data / "pki" / "ca.key")],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "agent.log", "wb"))
        async with Client(load_kubeconfig(data / "kubeconfig")) as client:
            nodes = find_resource("nodes")
            while not (await client.list(nodes)).get("items"):
                await asyncio.sleep(0.1)
            running = Running(client)
            running.task = asyncio.create_task(running._watch())
            await start_pods(client, running, ["warm-up"])
            await delete_all(client)
            single: list[float] = []
            for i in range(args.runs):
                single += await start_pods(client, running, [f"one-{i}"])
            await delete_all(client)
            burst = await start_pods(client, running,
                                     [f"burst-{i}" for i in range(args.parallel)])
            await asyncio.sleep(2)  # let the agent settle before reading its memory
            agent_rss = rss_mb(agent.pid)
            await delete_all(client)
            running.task.cancel()
    finally:
        if agent is not None:
            stop(agent)
        stop(server)
        await cleanup(root, cgroup_root)
    return {"single_pod": percentiles(single),
            f"pods_{args.parallel}_all_running_s": round(max(burst), 2),
            f"pods_{args.parallel}": percentiles(burst),
            f"agent_rss_mb_with_{args.parallel}_pods": round(agent_rss, 1)}


async def cleanup(root: Path, cgroup_root: str) -> None:
    """What the agent leaves on exit by design (running containers) goes here."""
    from kubelite.runtime import cgroups, mounts
    from kubelite.runtime.images import OCIImageStore
    from kubelite.runtime.runc import RuncRuntime

    rt = await RuncRuntime.open(root / "runtime", images=OCIImageStore(root),
                                cgroup_root=cgroup_root)
    for sb in await rt.list_sandboxes():
        await rt.remove_sandbox(sb.id)
    for c in await rt.list_containers():
        await rt.remove_container(c.id)
    cgroups.remove(rt.cgroups, cgroup_root)
    await asyncio.to_thread(mounts.unmount_all, str(root))


def baseline(runs: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("runc_baseline.py")),
                          "--runs", str(runs), "--parallel", "1"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=50)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="klpods-", dir="/tmp"))
    try:
        result = asyncio.run(measure(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare = baseline(args.runs)["bare_runc_run"]
    result["bare_runc_run"] = bare
    result["overhead_p50_ms"] = round(result["single_pod"]["p50_ms"] - bare["p50_ms"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
