"""Start-up time and idle memory of `kubelite up`.

Each run starts a fresh cluster (`kubelite up --nodes N` on a new data directory)
and times it until the command returns, which it does once the supervisor has
marked the cluster ready (every node Ready, with its pod CIDR, as reported by an
agent of this run); the nodes are checked Ready with kubectl as well. After the
last run the demo (examples/demo/deploy.sh: images built here, loaded into the
nodes, applied and waited for) is deployed, the cluster left idle, and the
resident memory taken: the control plane (supervisor, API server, controller
manager, ingress and every other process of the supervisor's tree that is not an
agent) and each agent alone (its pods excluded). `kubelite down --purge` after
each run. The last line printed is one JSON object.

    .venv/bin/python bench/startup.py [--runs 5] [--nodes 3] [--idle 10] [--no-demo]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUBELITE = [sys.executable, "-m", "kubelite.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        found.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    return found


def role(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if b"kubelite.cli.main" in argv:
        return argv[argv.index(b"kubelite.cli.main") + 1].decode()
    return Path(argv[0].decode()).name


def memory(info: dict) -> dict:
    """RSS in MB of the control plane by process, and of each agent alone."""
    agents = {n["pid"]: n["name"] for n in info["nodes"]}
    tree = children()
    control: dict[str, float] = {}
    todo = [info["supervisor_pid"]]
    while todo:
        pid = todo.pop()
        if pid in agents:
            continue
        name = "supervisor" if pid == info["supervisor_pid"] else role(pid)
        control[name] = control.get(name, 0) + rss_kb(pid) / 1024
        todo += tree.get(pid, [])
    return {"control_plane_mb": round(sum(control.values()), 1),
            "control_plane_by_process_mb": {k: round(v, 1) for k, v in control.items()},
            "agent_mb": {name: round(rss_kb(pid) / 1024, 1) for pid, name in agents.items()}}


class Run:
    def __init__(self, nodes: int) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="klb-", dir="/tmp"))
        self.data_dir = self.base / "data"
        self.nodes = nodes
        self.port, self.http_port, self.https_port = free_port(), free_port(), free_port()

    def kubelite(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run([*KUBELITE, *args, "--data-dir", str(self.data_dir)],
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"kubelite {args[0]}: {result.stdout}{result.stderr}")
        return result.stdout

    def kubectl(self, *args: str) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.data_dir / "kubeconfig")}
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env,
                              check=True, timeout=60).stdout

    def up(self) -> float:
        started = time.monotonic()
        self.kubelite("up", "--nodes", str(self.nodes), "--port", str(self.port),
                      "--http-port", str(self.http_port), "--https-port", str(self.https_port),
                      "--cluster-cidr", "10.199.0.0/16")
        took = time.monotonic() - started
        ready = json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]
        ready_names = [n["metadata"]["name"] for n in ready if any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])]
        if len(ready_names) != self.nodes:
            raise RuntimeError(f"up returned with nodes Ready: {ready_names}")
        return took

    def demo(self) -> None:
        env = {**os.environ, "KUBELITE_DATA_DIR": str(self.data_dir),
               "KUBELITE_HTTP_PORT": str(self.http_port),
               "KUBELITE": str(Path(sys.executable).parent / "kubelite")}
        subprocess.run([str(ROOT / "examples" / "demo" / "deploy.sh")], env=env, check=True,
                       capture_output=True, timeout=300, cwd=ROOT)

    def info(self) -> dict:
        return json.loads((self.data_dir / "cluster.json").read_text())

    def down(self) -> None:
        subprocess.run([*KUBELITE, "down", "--purge", "--data-dir", str(self.data_dir)],
                       capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", str(self.base)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds to leave the cluster idle before taking its memory")
    parser.add_argument("--no-demo", action="store_true",
                        help="take the memory of an empty cluster instead")
    args = parser.parse_args()
    times = []
    result: dict = {"nodes": args.nodes, "runs": args.runs}
    for k in range(args.runs):
        run = Run(args.nodes)
        try:
            times.append(run.up())
            print(f"run {k + 1}: {args.nodes} nodes Ready in {times[-1]:.2f}s", flush=True)
            if k == args.runs - 1:
                if not args.no_demo:
                    run.demo()
                time.sleep(args.idle)
                result.update(memory(run.info()), demo=not args.no_demo)
        finally:
            run.down()
    result.update(ready_s=[round(t, 2) for t in times],
                  median_ready_s=round(statistics.median(times), 2),
                  load_average=os.getloadavg()[0])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
