"""API server benchmark: durable creates/s, gets/s, latency at a fixed rate, list of
10,000 pods, watch delivery latency with 1,000 watchers, server RSS.

Starts a real `kubelite server` on loopback in a temporary data directory and
drives it over HTTPS with aiohttp. Prints one JSON object on its last line. The
API server is measured alone unless --with-controllers: on 2 cores the controller
manager, the benchmark client and the server would otherwise share them.

    .venv/bin/python bench/api.py [--pods 10000] [--watchers 1000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str) -> bytes:
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"},
                     "annotations": {"bench/created": f"{time.time():.6f}"}},
        "spec": {"containers": [{
            "name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 3600"],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "env": [{"name": "MODE", "value": "bench"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": "200m", "memory": "128Mi"}},
        }]},
    })


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, data_dir: Path, port: int) -> None:
        cfg = yaml.safe_load((data_dir / "kubeconfig").read_text())
        self.base = cfg["clusters"][0]["cluster"]["server"]
        token = cfg["users"][0]["user"]["token"]
        self.ssl = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def session(self, limit: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=limit),
            headers=self.headers, timeout=aiohttp.ClientTimeout(total=120))

    async def creates(self, names: list[str], concurrency: int) -> tuple[float, list[float]]:
        latencies: list[float] = []
        queue = list(reversed(names))
        async with self.session(concurrency) as s:
            async def worker() -> None:
                while queue:
                    name = queue.pop()
                    t0 = time.perf_counter()
                    async with s.post(self.base + PODS, data=pod(name)) as r:
                        await r.read()
                        assert r.status == 201, r.status
                    latencies.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return len(names) / (time.perf_counter() - t0), latencies

    async def creates_at_rate(self, prefix: str, rate: float, seconds: float) -> list[float]:
        latencies: list[float] = []
        async with self.session(256) as s:
            async def one(name: str) -> None:
                t0 = time.perf_counter()
                async with s.post(self.base + PODS, data=pod(name)) as r:
                    await r.read()
                    assert r.status == 201, r.status
                latencies.append(time.perf_counter() - t0)
            tasks = []
            start = time.perf_counter()
            for i in range(int(rate * seconds)):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(f"{prefix}-{i}")))
            await asyncio.gather(*tasks)
        return latencies

    async def gets(self, names: list[str], concurrency: int, total: int) -> float:
        async with self.session(concurrency) as s:
            count = 0

            async def worker(offset: int) -> None:
                nonlocal count
                i = offset
                while count < total:
                    count += 1
                    async with s.get(f"{self.base}{PODS}/{names[i % len(names)]}") as r:
                        await r.read()
                        assert r.status == 200
                    i += concurrency
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            return total / (time.perf_counter() - t0)

    async def list_latency(self, runs: int = 5) -> tuple[float, int]:
        times = []
        async with self.session(1) as s:
            for _ in range(runs):
                t0 = time.perf_counter()
                async with s.get(self.base + PODS) as r:
                    body = await r.read()
                times.append(time.perf_counter() - t0)
        return statistics.median(times), len(orjson.loads(body)["items"])

    async def watch_latency(self, watchers: int, events: int) -> tuple[list[float], int]:
        """`watchers` concurrent watches on configmaps; each created configmap carries its
        send time; delivery latency = receive time - send time, over every watcher."""
        path = "/api/v1/namespaces/default/configmaps"
        latencies: list[float] = []
        ready = 0
        all_ready = asyncio.Event()
        async with self.session(watchers + 8) as s:
            async with s.get(self.base + path) as r:
                rv = orjson.loads(await r.read())["metadata"]["resourceVersion"]

            async def watcher() -> None:
                nonlocal ready
                url = f"{self.base}{path}?watch=true&resourceVersion={rv}&timeoutSeconds=120"
                async with s.get(url) as r:
                    ready += 1
                    if ready == watchers:
                        all_ready.set()
                    seen = 0
                    async for line in r.content:
                        ev = orjson.loads(line)
                        sent = float(ev["object"]["data"]["sent"])
                        latencies.append(time.time() - sent)
                        seen += 1
                        if seen == events:
                            return
            tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
            await asyncio.wait_for(all_ready.wait(), 60)
            await asyncio.sleep(0.5)
            for i in range(events):
                body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": f"w-{i}"},
                                     "data": {"sent": f"{time.time():.6f}"}})
                async with s.post(self.base + path, data=body) as r:
                    await r.read()
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
        return latencies, watchers


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--watch-events", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--with-controllers", action="store_true",
                        help="also run the controller manager (it competes for the 2 cores)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp:
        data = Path(tmp) / "data"
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.cli.main", "server", "--data-dir", str(data),
             "--listen", f"127.0.0.1:{port}",
             *([] if args.with_controllers else ["--disable-controllers"])],
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "server.log", "wb"))
        try:
            t0 = time.perf_counter()
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                        if (data / "kubeconfig").exists():
                            break
                except OSError:
                    await asyncio.sleep(0.02)
            startup = time.perf_counter() - t0
            bench = Bench(data, port)
            names = [f"pod-{i:05d}" for i in range(args.pods)]
            create_rate, create_lat = await bench.creates(names, args.concurrency)
            rss = rss_mb(proc.pid)
            list_s, listed = await bench.list_latency()
            get_rate = await bench.gets(names, args.concurrency, 20_000)
            fixed = await bench.creates_at_rate("rate", 500, 6)
            watch_lat, _ = await bench.watch_latency(args.watchers, args.watch_events)
            result = {
                "controllers": args.with_controllers,
                "server_startup_s": round(startup, 3),
                "pods_created": args.pods,
                "creates_per_s": round(create_rate, 1),
                "create_latency_p50_ms": round(pct(create_lat, 0.5) * 1000, 2),
                "create_latency_p99_ms": round(pct(create_lat, 0.99) * 1000, 2),
                "gets_per_s": round(get_rate, 1),
                "latency_at_500_creates_per_s_p50_ms": round(pct(fixed, 0.5) * 1000, 2),
                "latency_at_500_creates_per_s_p99_ms": round(pct(fixed, 0.99) * 1000, 2),
                "list_10k_pods_s": round(list_s, 3),
                "listed_items": listed,
                "watchers": args.watchers,
                "watch_events_delivered": len(watch_lat),
                "watch_delivery_p50_ms": round(pct(watch_lat, 0.5) * 1000, 2),
                "watch_delivery_p99_ms": round(pct(watch_lat, 0.99) * 1000, 2),
                "server_rss_mb_with_pods": round(rss, 1),
                "server_rss_mb_end": round(rss_mb(proc.pid), 1),
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
