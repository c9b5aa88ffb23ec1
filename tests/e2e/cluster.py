"""A real `kubelite up` cluster for end-to-end tests: API server, controllers,
scheduler, DNS and ingress on the host, N agents in network namespaces of their
own, real runc and CNI. `down --purge` removes everything it made, also when a
test failed."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.e2e.conftest import KUBECTL
from tests.ports import free_port

KUBELITE = [sys.executable, "-m", "kubelite.cli.main"]


def need_host() -> str | None:
    """Why a cluster cannot run here, or None."""
    if os.geteuid() != 0:
        return "a cluster needs root"
    for tool in ("runc", "nsenter", "ip", "nft", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/usr/lib/cni/bridge").exists():
        return "containernetworking-plugins is not installed"
    return None


class Cluster:
    def __init__(self, base: Path | None = None, *, nodes: int = 3,
                 extra_args: tuple[str, ...] = ()) -> None:
        # Short: unix sockets and runc state under the nodes' roots must fit their limits.
        self.data_dir = Path(tempfile.mkdtemp(prefix="klc-", dir="/tmp")) / "data"
        self.nodes = nodes
        self.port, self.http_port, self.https_port = free_port(), free_port(), free_port()
        # Each test cluster has pod CIDRs of its own: the host routes to them must not
        # collide with another cluster's on the same machine.
        self.cluster_cidr = f"10.{random.randrange(100, 200)}.0.0/16"
        self.extra_args = extra_args
        self.info: dict[str, Any] = {}

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def kubelite(self, *args: str, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*KUBELITE, *args, "--data-dir", str(self.data_dir)],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubelite {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}\n{self.log_tail()}")
        return result

    def up(self) -> None:
        self.kubelite("up", "--nodes", str(self.nodes), "--port", str(self.port),
                      "--http-port", str(self.http_port), "--https-port", str(self.https_port),
                      "--cluster-cidr", self.cluster_cidr, *self.extra_args)
        self.info = json.loads((self.data_dir / "cluster.json").read_text())

    def down(self) -> None:
        self.kubelite("down", "--purge", check=False)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.data_dir / "up.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> str:
        """stdout; with check=False a failure gives stdout and stderr together."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "HOME": str(self.data_dir.parent)}
        result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                                env=env, timeout=timeout)
        if result.returncode != 0:
            if check:
                raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):"
                                     f"\n{result.stdout}\n{result.stderr}")
            return result.stdout + result.stderr
        return result.stdout

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def node_info(self, name: str) -> dict[str, Any]:
        return next(n for n in self.info["nodes"] if n["name"] == name)

    def node_exec(self, node: str, *cmd: str, timeout: float = 30,
                  input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `cmd` on the node machine: in its network namespace."""
        netns = self.node_info(node)["netns"]
        return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", *cmd],
                              capture_output=True, text=True, timeout=timeout, input=input)

    def node(self, op: str, name: str) -> str:
        return self.kubelite("node", op, name).stdout
