"""Scheduler benchmark, shaped like kube-scheduler's scheduler_perf SchedulingBasic:
N nodes, M pods created as fast as the API takes them, throughput measured from
the first bind to the last, p50/p99 of created -> bound, and the RSS of the
scheduler's process. As in scheduler_perf, the API server runs with the scheduler
alone (`kubelite scheduler`, no controller manager) unless --with-controllers puts it
back in the controller manager as `kubelite server` runs it. The nodes are hollow nodes
(kubelite simulate) keeping Leases alive and, unless --no-run-pods, reporting their
pods Running, all through the same API server that takes the bindings.

    .venv/bin/python bench/scheduler.py [--nodes 5000] [--pods 10000] [--no-run-pods] [--owned] [--zones 3]

--owned makes the pods a ReplicaSet's, as a Deployment's are: the scheduler then
applies the cluster's default topology spread to them, by hostname and, with
--zones N, by zone.

--precreate creates every pod first and starts the scheduler afterwards, so that
the scheduler drains a backlog and no longer shares the API server's one core with
the creates: the scheduler's own rate, where the default run measures create, bind
and Event together through one server process.

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).parent))
import api as apibench  # noqa: E402
from kubelite.client import Client, load_kubeconfig  # noqa: E402
from kubelite.scheduler.simulate import HollowNodes, HollowSpec  # noqa: E402


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def cpu_seconds(pid: int | None, *, main_thread: bool = False) -> float:
    """user + system CPU time of a process so far: on a shared machine, CPU per pod
    tells more than wall-clock throughput, which other load drags down. With
    `main_thread`, only its first thread's: the API server's event loop, which one
    core bounds whatever the other threads do."""
    if pid is None:
        return 0.0
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Poster:
    """One keep-alive HTTPS connection POSTing pre-encoded bodies, as load generators
    (wrk, hey) do: the client shares the two cores with what it measures, and a
    general HTTP client took a sixth of them."""

    def __init__(self, base: str, authorization: str, context: ssl.SSLContext) -> None:
        url = urllib.parse.urlsplit(base)
        self.host, self.port, self.context = url.hostname, url.port, context
        self.head = (f"POST %s HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: "
                     f"{authorization}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: %d\r\n\r\n")

    async def __aenter__(self) -> Poster:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()

    async def post(self, path: str, body: bytes) -> int:
        self.writer.write((self.head % (path, len(body))).encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise RuntimeError("a chunked answer to a create")
        await self.reader.readexactly(length)
        return status


def calibration_ms() -> float:
    """A fixed pure-Python workload, independent of kubelite's code, timed: this
    machine's speed drifts by up to half between runs of the same code, and two
    runs' figures compare only at a like calibration."""
    t = time.perf_counter()
    for i in range(300_000):
        d = {"a": i, "b": str(i)}
        d["c"] = d["a"] + len(d["b"])
    return (time.perf_counter() - t) * 1000


BOUND_NAME = re.compile(rb'"name":"(sched-\d+)"')


def pod(i: int, owner: dict[str, str] | None = None) -> bytes:
    meta: dict[str, object] = {"name": f"sched-{i}"}
    if owner is not None:
        meta["labels"] = {"app": "sched"}
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "controller": True, **owner}]
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
            "requests": {"cpu": "100m", "memory": "100Mi"}}}]}})


REPLICASET = {
    "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "sched"},
    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "sched"}}, "template": {
        "metadata": {"labels": {"app": "sched"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-run-pods", action="store_true",
                        help="hollow nodes do not report their pods Running")
    parser.add_argument("--with-controllers", action="store_true",
                        help="the scheduler in the controller manager, beside every "
                        "controller, instead of alone")
    parser.add_argument("--owned", action="store_true",
                        help="pods of one ReplicaSet, as a Deployment's are, which brings in "
                        "the default topology spread (hostname and zone); only without "
                        "--with-controllers, whose ReplicaSet controller would delete them")
    parser.add_argument("--zones", type=int, default=0,
                        help="spread the nodes over this many topology.kubernetes.io/zone values")
    parser.add_argument("--precreate", action="store_true",
                        help="create every pod before the scheduler starts")
    parser.add_argument("--lease-interval", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="stop waiting for bindings after this many seconds")
    args = parser.parse_args()
    if args.with_controllers and (args.owned or args.precreate):
        parser.error("--owned and --precreate need the scheduler alone")
    calibration = calibration_ms()
    with tempfile.TemporaryDirectory(prefix="kubelite-sched-") as tmp:
        data = Path(tmp) / "data"
        port = apibench.free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.cli.main", "server", "--data-dir", str(data),
             "--listen", f"127.0.0.1:{port}",
             *([] if args.with_controllers else ["--disable-controllers"])],
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "server.log", "wb"))
        scheduler: subprocess.Popen[bytes] | None = None

        def start_scheduler() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "kubelite.cli.main", "scheduler",
                 "--kubeconfig", str(data / "kubeconfig")],
                stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "scheduler.log", "wb"))
        try:
            while not (data / "kubeconfig").exists():
                if proc.poll() is not None:
                    raise SystemExit(f"the API server exited: see {tmp}/server.log")
                await asyncio.sleep(0.05)
            if not args.with_controllers and not args.precreate:
                scheduler = start_scheduler()
            await asyncio.sleep(1.0)
            bench = apibench.Bench(data, port)
            spec = HollowSpec(count=args.nodes, cpu="32", memory="256Gi", pods=110, zones=args.zones,
                              lease_interval=args.lease_interval,
                              run_pods=not args.no_run_pods)
            # Hollow nodes stand in for kubelets on other machines: HTTPS, not the socket.
            config = dataclasses.replace(
                await asyncio.to_thread(load_kubeconfig, data / "kubeconfig"), socket=None)
            async with bench.session(args.concurrency + 4) as s, \
                    Client(config, user_agent="bench-hollow") as client, \
                    HollowNodes(client, spec):
                owner = None
                if args.owned:
                    async with s.post(f"{bench.base}/apis/apps/v1/namespaces/default/replicasets",
                                      json=REPLICASET) as r:
                        owner = {"name": "sched", "uid": (await r.json())["metadata"]["uid"]}
                await asyncio.sleep(3.0)  # the scheduler's node cache catches up

                created: dict[str, float] = {}
                bound: dict[str, float] = {}
                done = asyncio.Event()
                url = (f"{bench.base}{apibench.PODS}?watch=true&resourceVersion=0"
                       f"&timeoutSeconds=600")

                async def watch() -> None:
                    # Found in the bytes: decoding every event cost the client a core's tenth.
                    async with s.get(url) as r:
                        async for line in r.content:
                            if b'"nodeName":"' not in line:
                                if line.startswith(b'{"type":"ERROR"'):
                                    raise SystemExit(f"the benchmark's watch ended: {line!r}")
                                continue
                            found = BOUND_NAME.search(line)
                            name = found.group(1).decode() if found else ""
                            if name and name not in bound:
                                bound[name] = time.perf_counter()
                                if len(bound) == args.pods:
                                    done.set()
                                    return
                watcher = asyncio.create_task(watch())
                await asyncio.sleep(0.5)
                todo = list(range(args.pods))
                scheduler_pid = scheduler.pid if scheduler else next(
                    iter(child_pids(proc.pid)), None)
                cpu0 = (cpu_seconds(proc.pid), cpu_seconds(scheduler_pid), time.process_time(),
                        cpu_seconds(proc.pid, main_thread=True))

                async def make_pods() -> None:
                    async with Poster(bench.base, bench.headers["Authorization"],
                                      bench.ssl) as poster:
                        while todo:
                            i = todo.pop()
                            status = await poster.post(apibench.PODS, pod(i, owner))
                            if status != 201:
                                raise SystemExit(f"creating sched-{i}: HTTP {status}")
                            created[f"sched-{i}"] = time.perf_counter()
                t0 = time.perf_counter()
                await asyncio.gather(*(make_pods() for _ in range(args.concurrency)))
                create_s = time.perf_counter() - t0
                print(f"created {args.pods} pods in {create_s:.1f}s, {len(bound)} bound",
                      file=sys.stderr, flush=True)
                if args.precreate:
                    scheduler = start_scheduler()
                    scheduler_pid = scheduler.pid
                    cpu0 = (cpu_seconds(proc.pid), 0.0, time.process_time(),
                            cpu_seconds(proc.pid, main_thread=True))
                waiting = asyncio.create_task(done.wait())
                await asyncio.wait((watcher, waiting), timeout=args.timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if watcher.done():
                    watcher.result()  # a watch that ended early fails the run
                watcher.cancel()
                cpu = (cpu_seconds(proc.pid) - cpu0[0], cpu_seconds(scheduler_pid) - cpu0[1],
                       time.process_time() - cpu0[2],
                       cpu_seconds(proc.pid, main_thread=True) - cpu0[3])
            times = sorted(bound.values())
            latencies = [bound[n] - created[n] for n in bound if n in created]
            result = {
                "nodes": args.nodes, "pods": args.pods, "owned": args.owned, "zones": args.zones,
                "precreate": args.precreate, "bound": len(bound),
                "create_s": round(create_s, 2),
                "throughput_pods_per_s": round((len(times) - 1) / (times[-1] - times[0]), 1),
                "latency_p50_ms": round(apibench.pct(latencies, 0.5) * 1000, 1),
                "latency_p99_ms": round(apibench.pct(latencies, 0.99) * 1000, 1),
                "scheduler_process_rss_mb": round(apibench.rss_mb(scheduler_pid), 1)
                if scheduler_pid else None,
                "api_server_rss_mb": round(apibench.rss_mb(proc.pid), 1),
                "scheduler_process_cpu_ms_per_pod": round(cpu[1] * 1000 / max(len(bound), 1), 2),
                "api_server_cpu_ms_per_pod": round(cpu[0] * 1000 / max(len(bound), 1), 2),
                # its event loop's thread alone: 1000 / this bounds pods/s
                "api_server_loop_cpu_ms_per_pod": round(cpu[3] * 1000 / max(len(bound), 1), 2),
                # the benchmark's own process: creating pods, watching, hollow nodes
                "client_cpu_ms_per_pod": round(cpu[2] * 1000 / max(len(bound), 1), 2),
                "load_average": os.getloadavg()[0],
                # before and after the run: see calibration_ms
                "calibration_ms": [round(calibration, 1), round(calibration_ms(), 1)],
            }
        finally:
            for child in (scheduler, proc):
                if child is not None:
                    child.send_signal(signal.SIGTERM)
                    child.wait(20)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    # The client on the same two cores as what it measures: spend as little as
    # kubelite's own processes do on its event loop and collector.
    gc.set_threshold(50_000, 20, 100)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
