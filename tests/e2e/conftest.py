"""A real kubelite API server per test module, driven with the real kubectl."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port

KUBECTL = "kubectl"


@dataclass
class Server:
    data_dir: Path
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelite.cli.main", "server", "--data-dir",
             str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if self.kubeconfig.exists():
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                    "HOME": str(self.data_dir.parent), **(env or {})}
        result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                                env=full_env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}")
        return result

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("kubelite")
    srv = Server(data_dir=base / "data", port=free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A 3-node `kubelite up` cluster per test module (tests/e2e/cluster.py)."""
    from tests.e2e.cluster import Cluster, need_host

    if reason := need_host():
        pytest.skip(reason)
    c = Cluster(nodes=3)
    try:
        c.up()
        yield c
    finally:
        c.down()
