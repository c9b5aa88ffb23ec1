"""`kubelite up`: a local multi-node cluster in one command (see kubelite.cluster)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from kubelite.cli.main import default_data_dir

START_TIMEOUT = 90.0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("up", help="start a local multi-node cluster",
                       description="Start the API server, controllers, scheduler, DNS and "
                                   "ingress, and N worker nodes, each an agent in a network "
                                   "namespace of its own; return when every node is Ready.")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--port", type=int, default=6443, help="API server port (default 6443)")
    p.add_argument("--http-port", type=int, default=80, help="Ingress HTTP port (default 80)")
    p.add_argument("--https-port", type=int, default=443,
                   help="Ingress HTTPS port (default 443)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16")
    p.add_argument("--service-cidr", default="10.96.0.0/16")
    p.add_argument("--registry", default="", metavar="IP:PORT",
                   help="an image registry on this machine, made reachable from every node "
                        "under the same address")
    p.add_argument("--foreground", action="store_true",
                   help="stay in the foreground until interrupted")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cluster import machines, teardown
    from kubelite.cluster.layout import choose_subnet, cluster_name, load_layout, make_layout

    if args.nodes < 1:
        print("error: --nodes must be at least 1", file=sys.stderr)
        return 2
    if args.registry:
        from kubelite.cluster.registry import parse

        try:
            parse(args.registry)
        except ValueError:
            print(f"error: --registry must be IP:PORT, got {args.registry!r}", file=sys.stderr)
            return 2
    data_dir = args.data_dir.resolve()
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    subnet = ""
    if (data_dir / "cluster.json").exists():
        saved, status = await asyncio.to_thread(load_layout, data_dir)
        pid = status.get("supervisor_pid", 0)
        if pid and not status.get("stopped") and _alive(pid):
            print(f"a cluster is already running from {data_dir} (pid {pid}); "
                  f"`kubelite down --data-dir {data_dir}` stops it", file=sys.stderr)
            return 1
        # The nodes keep their addresses: pods still running there and the routes
        # stored in the API (podCIDR via node IP) name them.
        subnet = saved.subnet
    if not subnet:
        subnet = choose_subnet(cluster_name(data_dir), taken=await machines.used_networks())
    layout = make_layout(data_dir, nodes=args.nodes, port=args.port,
                         cluster_cidr=args.cluster_cidr, service_cidr=args.service_cidr,
                         http_port=args.http_port, https_port=args.https_port, subnet=subnet,
                         registry=args.registry)
    # What an unclean stop left running of this cluster would hold its ports.
    await teardown.kill_processes(await teardown.stray_processes(data_dir), data_dir)
    if busy := _ports_in_use(args.port, args.http_port, args.https_port):
        # Another process's API server on our port would answer in place of ours,
        # and the nodes would fail on its certificate instead of a clear message.
        print(f"error: port {busy} is in use", file=sys.stderr)
        return 1
    await asyncio.to_thread(layout.save, ready=False)
    if args.foreground:
        return await _foreground(layout)
    started = time.monotonic()
    log = open(layout.log_file, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubelite.cli.main", "up", "--foreground",
         "--nodes", str(args.nodes), "--data-dir", str(data_dir), "--port", str(args.port),
         "--http-port", str(args.http_port), "--https-port", str(args.https_port),
         "--cluster-cidr", args.cluster_cidr, "--service-cidr", args.service_cidr,
         *(["--registry", args.registry] if args.registry else [])],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, cwd="/")
    while time.monotonic() - started < START_TIMEOUT:
        if proc.poll() is not None:
            print(f"error: the cluster did not start; see {layout.log_file}:", file=sys.stderr)
            print(_tail(layout.log_file), file=sys.stderr)
            return 1
        if _ready(layout.state_file, proc.pid):
            took = time.monotonic() - started
            print(f"cluster {layout.name}: {args.nodes} nodes Ready in {took:.1f}s")
            print(f"kubeconfig: {layout.kubeconfig}")
            print(f"export KUBECONFIG={layout.kubeconfig}")
            return 0
        await asyncio.sleep(0.05)
    print(f"error: nodes not Ready after {START_TIMEOUT:.0f}s; see {layout.log_file}",
          file=sys.stderr)
    return 1


async def _foreground(layout: object) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.cluster.supervisor import Supervisor

    supervisor = Supervisor(layout)  # type: ignore[arg-type]
    return await run_until_signalled(supervisor.run)


def _ready(state_file: Path, pid: int) -> bool:
    try:
        doc = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return False
    return bool(doc.get("ready")) and doc.get("supervisor_pid") == pid


def _ports_in_use(*ports: int) -> int | None:
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return port
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
