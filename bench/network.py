"""Service networking on a real `kubelite up` cluster (2 nodes): the throughput and
p99 latency of a small HTTP response from a busybox httpd pod on node-1, measured
from a client in the network namespace of a pod on node-2, three ways: direct to
the pod IP, through the Service's ClusterIP (node-2's nftables proxy), and through
the Ingress proxy (host namespace, at the gateway address). The client speaks
HTTP/1.1 with keep-alive as browsers do: busybox httpd closes after each response,
so direct and ClusterIP requests each open a connection, while the Ingress keeps
the client's (and opens one to the pod per request). Each target runs
`--rounds` times interleaved; figures are of each target's best round (the machine
is shared), ratios also as the median of per-round ratios.

Then, with `--services` Services (each with the pod as endpoint) present, the
time from an API write to the rule being live in node-2's nftables: a port
change of an existing Service (proxy only) and a new Service (EndpointSlice
controller, then proxy).

    .venv/bin/python bench/network.py [--seconds 3] [--rounds 5] [--services 1000]

Needs root, runc and the CNI plugins. Starts and purges its own cluster.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.cluster import Cluster, need_host  # noqa: E402

from kubelite.client import Client, load_kubeconfig  # noqa: E402
from kubelite.client.api import find_resource  # noqa: E402

BODY = "ok"
# Marks the client pod's process on the host, to find its network namespace.
CLIENT_SLEEP = str(86400 + secrets.randbelow(100000))
HOST = "bench.test"

# Runs inside node-2's network namespace: N workers, one connection per request.
LOADGEN = r"""
import asyncio, json, sys, time
host, port, vhost, seconds, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
request = f"GET / HTTP/1.1\r\nHost: {vhost}\r\n\r\n".encode()
lat, errors, connects = [], 0, 0
async def one(conn):
    global connects
    if conn is None:
        connects += 1
        conn = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    r, w = conn
    w.write(request)
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 2)
    fields = dict(l.split(b":", 1) for l in head.split(b"\r\n")[1:] if b":" in l)
    fields = {k.strip().lower(): v.strip().lower() for k, v in fields.items()}
    if b"content-length" in fields:
        await asyncio.wait_for(r.readexactly(int(fields[b"content-length"])), 2)
    else:
        await asyncio.wait_for(r.read(), 2)
        fields[b"connection"] = b"close"
    if head[9:12] != b"200":
        raise OSError(head[:12])
    if fields.get(b"connection") == b"close" or head.startswith(b"HTTP/1.0"):
        w.close()
        return None
    return conn
async def worker(deadline):
    global errors
    conn = None
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            conn = await one(conn)
            lat.append(time.monotonic() - t0)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            errors += 1
            if conn is not None:
                conn[1].close()
            conn = None
async def main():
    start = time.monotonic()
    await asyncio.gather(*(worker(start + seconds) for _ in range(workers)))
    took = time.monotonic() - start
    lat.sort()
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else 0.0
    print(json.dumps({"requests": len(lat), "errors": errors, "connections": connects,
                      "rps": len(lat) / took, "p50_ms": lat[len(lat) // 2] * 1000 if lat else 0.0,
                      "p99_ms": p99 * 1000}))
asyncio.run(main())
"""


# Runs inside the client pod's network namespace: for each "IP PORT" line, connects
# until the connection is accepted and prints the CLOCK_MONOTONIC time it was.
# Before the rule is live the SYN goes unanswered: each try gives up after 20 ms,
# which bounds the error of the measurement.
PROBE = r"""
import socket, sys, time
for line in sys.stdin:
    ip, port = line.split()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, int(port)), timeout=0.02).close()
            break
        except OSError:
            time.sleep(0.001)
    print(time.monotonic() if time.monotonic() < deadline else -1, flush=True)
"""


def manifests() -> dict:
    web = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "bench-web", "labels": {"app": "bench-web"}},
           "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 0, "containers": [{
               "name": "httpd", "image": "busybox", "imagePullPolicy": "IfNotPresent",
               "command": ["busybox", "sh", "-c", f"mkdir -p /www && echo {BODY} > "
                           "/www/index.html && exec busybox httpd -f -p 8080 -h /www"],
               "ports": [{"name": "http", "containerPort": 8080}]}]}}
    svc = service("bench-web")
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "bench"},
               "spec": {"rules": [{"host": HOST, "http": {"paths": [{
                   "path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": "bench-web", "port": {"number": 80}}}}]}}]}}
    # The load generator runs in this pod's network namespace: a pod's path to a
    # Service (its node's nftables) is the one measured.
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench-client"},
              "spec": {"nodeName": "node-2", "terminationGracePeriodSeconds": 0, "containers": [{
                  "name": "idle", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                  "command": ["busybox", "sleep", CLIENT_SLEEP]}]}}
    return {"apiVersion": "v1", "kind": "List", "items": [web, svc, ingress, client]}


def service(name: str, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "bench-web"},
                     "ports": [{"name": "http", "port": port, "targetPort": 8080}]}}


def client_netns() -> str:
    want = f"sleep\0{CLIENT_SLEEP}\0".encode()
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if want in path.read_bytes():
                return str(path.parent / "ns" / "net")
        except OSError:
            continue
    raise RuntimeError("the client pod's process is not there")


def load(netns: str, target: tuple[str, int], *, seconds: float,
         workers: int) -> dict[str, float]:
    res = subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-c", LOADGEN,
                          target[0], str(target[1]), HOST, str(seconds), str(workers)],
                         capture_output=True, text=True, timeout=seconds + 30)
    if res.returncode != 0:
        raise RuntimeError(f"load generator failed: {res.stderr}")
    return json.loads(res.stdout)


def wait_until(check: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def throughput(cluster: Cluster, *, seconds: float, rounds: int,
               workers: int) -> dict[str, list[dict[str, float]]]:
    pod_ip = cluster.kubectl_json("get", "pod", "bench-web")["status"]["podIP"]
    vip = cluster.kubectl_json("get", "service", "bench-web")["spec"]["clusterIP"]
    targets = {"direct": (pod_ip, 8080), "cluster_ip": (vip, 80),
               "ingress": (cluster.info["gateway"], cluster.http_port)}
    netns = client_netns()
    for name, target in targets.items():
        wait_until(lambda t=target: load(netns, t, seconds=0.5, workers=1)["requests"] > 0,
                   timeout=60, what=f"{name} to answer")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            run = load(netns, target, seconds=seconds, workers=workers)
            print(f"{name:10s} {run['rps']:8.0f} req/s  p99 {run['p99_ms']:6.2f} ms  "
                  f"errors {run['errors']}", file=sys.stderr)
            runs[name].append(run)
    return runs


def ratio(runs: dict[str, list[dict[str, float]]], name: str) -> dict[str, float]:
    """Against direct: of the best rounds, and the median of the rounds' own ratios
    (each round's targets ran back to back, under about the same outside load)."""
    best = max(r["rps"] for r in runs[name]) / max(r["rps"] for r in runs["direct"])
    paired = statistics.median(r["rps"] / d["rps"] for r, d in zip(runs[name], runs["direct"],
                                                                     strict=True))
    return {"best": round(best, 3), "median_paired": round(paired, 3)}


def service_count(cluster: Cluster) -> int:
    out = cluster.node_exec("node-2", "nft", "-j", "list", "map", "ip", "kubelite",
                            "service-ips").stdout
    for item in json.loads(out or '{"nftables": []}')["nftables"]:
        if "map" in item:
            return len(item["map"].get("elem") or [])
    return 0


class Prober:
    """PROBE in the client pod's network namespace; `await live(ip, port)` returns
    the monotonic time the port first accepted a connection."""

    async def start(self, netns: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={netns}", sys.executable, "-c", PROBE,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def live(self, ip: str, port: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{ip} {port}\n".encode())
        await self.proc.stdin.drain()
        when = float(await self.proc.stdout.readline())
        if when < 0:
            raise RuntimeError(f"{ip}:{port} not live in 30 s")
        return when

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def rule_updates(cluster: Cluster, *, services: int, samples: int) -> dict[str, Any]:
    res = find_resource("services")
    prober = Prober()
    await prober.start(client_netns())
    try:
        async with Client(load_kubeconfig(cluster.kubeconfig)) as client:
            return await _rule_updates(cluster, client, res, prober, services=services,
                                       samples=samples)
    finally:
        await prober.stop()


async def _rule_updates(cluster: Cluster, client: Client, res: Any, prober: Prober, *,
                        services: int, samples: int) -> dict[str, Any]:
    limit = asyncio.Semaphore(16)

    async def create(i: int) -> None:
        async with limit:
            await client.create(res, service(f"bulk-{i:04d}"), "default")
    started = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(services)))
    created = time.monotonic() - started
    await asyncio.to_thread(wait_until, lambda: service_count(cluster) >= services + 1,
                            timeout=300, what=f"{services} services in nftables")
    programmed = time.monotonic() - started
    await asyncio.sleep(2)  # let the last slices and syncs settle
    updates, creates = [], []
    for i in range(samples):
        port = 9000 + i
        vip = (await client.get(res, f"bulk-{i:04d}", "default"))["spec"]["clusterIP"]
        t0 = time.monotonic()
        await client.patch(res, f"bulk-{i:04d}", {"spec": {"ports": [
            {"name": "http", "port": port, "targetPort": 8080}]}}, namespace="default")
        updates.append(await prober.live(vip, port) - t0)
        t0 = time.monotonic()
        svc = await client.create(res, service(f"fresh-{i:02d}"), "default")
        creates.append(await prober.live(svc["spec"]["clusterIP"], 80) - t0)
        await asyncio.sleep(0.2)
    return {"services": services, "create_all_s": round(created, 1),
            "all_programmed_s": round(programmed, 1),
            "update_p50_ms": ms(statistics.median(updates)), "update_max_ms": ms(max(updates)),
            "create_p50_ms": ms(statistics.median(creates)), "create_max_ms": ms(max(creates))}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and target")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8, help="concurrent connections")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10, help="rule update samples")
    args = parser.parse_args()
    if reason := need_host():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    cluster = Cluster(nodes=2)
    try:
        cluster.up()
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifests()))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/bench-web", "pod/bench-client",
                        "--timeout=90s",
                        timeout=120)
        runs = throughput(cluster, seconds=args.seconds, rounds=args.rounds,
                          workers=args.workers)
        rules = asyncio.run(rule_updates(cluster, services=args.services,
                                         samples=args.samples))
    except (subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.down()
    result: dict[str, Any] = {}
    for name, target_runs in runs.items():
        top = max(target_runs, key=lambda r: r["rps"])
        result[name] = {"rps": round(top["rps"]), "p50_ms": round(top["p50_ms"], 2),
                        "p99_ms": round(top["p99_ms"], 2),
                        "errors": sum(r["errors"] for r in target_runs)}
    result.update(
        cluster_ip_vs_direct=ratio(runs, "cluster_ip"), ingress_vs_direct=ratio(runs, "ingress"),
        rule_update=rules, workers=args.workers, seconds=args.seconds, rounds=args.rounds)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
