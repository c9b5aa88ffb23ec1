"""Two machines from two network namespaces joined by a veth pair, nothing else
shared: `kubelite server` in one, `kubelite agent --token` in the other, driven
with the real kubectl. Everything (processes, namespaces, veths, cgroups, files)
is removed after the module, also when a test fails."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

SERVER_IP, AGENT_IP = "192.168.251.1", "192.168.251.2"
NODE = "joined-1"


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


@dataclass
class Machines:
    name: str
    base: Path
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    join: str = ""

    @property
    def server_ns(self) -> str:
        return f"{self.name}s"

    @property
    def agent_ns(self) -> str:
        return f"{self.name}a"

    @property
    def data(self) -> Path:
        return self.base / "server"

    @property
    def cgroup_root(self) -> str:
        return f"/{self.name}"

    def in_ns(self, ns: str, *cmd: str) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{ns}", *cmd]

    def network_up(self) -> None:
        _run("ip", "netns", "add", self.server_ns)
        _run("ip", "netns", "add", self.agent_ns)
        _run("ip", "link", "add", f"{self.name}-s", "type", "veth", "peer", "name",
             f"{self.name}-a")
        for end, ns, ip in (("s", self.server_ns, SERVER_IP), ("a", self.agent_ns, AGENT_IP)):
            _run("ip", "link", "set", f"{self.name}-{end}", "netns", ns)
            _run(*self.in_ns(ns, "ip", "addr", "add", f"{ip}/30", "dev", f"{self.name}-{end}"))
            _run(*self.in_ns(ns, "ip", "link", "set", f"{self.name}-{end}", "up"))
            _run(*self.in_ns(ns, "ip", "link", "set", "lo", "up"))

    def start_server(self) -> None:
        log = open(self.base / "server.log", "ab")
        self.procs.append(subprocess.Popen(
            self.in_ns(self.server_ns, sys.executable, "-m", "kubelite.cli.main", "server",
                       "--data-dir", str(self.data), "--listen", f"{SERVER_IP}:{self.port}",
                       "--disable-controllers"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"kubelite agent --server \S+ --token \S+ --ca-cert-hash \S+",
                              (self.base / "server.log").read_text())
            if found:
                self.join = found.group(0)
                return
            if self.procs[-1].poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no join command: {(self.base / 'server.log').read_text()[-3000:]}")

    def agent_args(self, root: Path, *, token: str | None = None,
                   ca_hash: str | None = None) -> list[str]:
        words = self.join.split()
        words[words.index("--token") + 1] = token or words[words.index("--token") + 1]
        words[words.index("--ca-cert-hash") + 1] = (
            ca_hash or words[words.index("--ca-cert-hash") + 1])
        return self.in_ns(self.agent_ns, sys.executable, "-m", "kubelite.cli.main", *words[1:],
                          "--node-name", NODE, "--root", str(root), "--node-ip", AGENT_IP,
                          "--address", AGENT_IP, "--port", str(free_port()),
                          "--cgroup-root", self.cgroup_root)

    def load_busybox(self) -> None:
        """The busybox image in the agent's store, as no registry is reachable."""
        archive = self.base / "busybox.tar"
        _run(sys.executable, "-m", "kubelite.cli.main", "image", "busybox", "-o", str(archive))
        _run(sys.executable, "-m", "kubelite.cli.main", "image", "import", str(archive),
             "--root", str(self.base / "agent"))
        archive.unlink()

    def start_agent(self) -> None:
        log = open(self.base / "agent.log", "ab")
        self.procs.append(subprocess.Popen(self.agent_args(self.base / "agent"), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def kubectl(self, *args: str, kubeconfig: Path | None = None, check: bool = True,
                input: str | None = None) -> subprocess.CompletedProcess:
        config = kubeconfig or self.data / "kubeconfig"
        result = subprocess.run(
            self.in_ns(self.server_ns, "kubectl", "--kubeconfig", str(config), *args),
            input=input, capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": str(self.base)})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {args} failed: {result.stdout}{result.stderr}")
        return result

    def kubelite(self, *args: str) -> subprocess.CompletedProcess:
        return _run(*self.in_ns(self.server_ns, sys.executable, "-m", "kubelite.cli.main",
                                *args))

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._sweep_runtime(self.base / "agent")
        for ns in (self.server_ns, self.agent_ns):
            _run("ip", "netns", "delete", ns, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _sweep_runtime(self, root: Path) -> None:
        if not (root / "runtime").exists():
            return
        from kubelite.runtime import cgroups, mounts
        from kubelite.runtime.images import OCIImageStore
        from kubelite.runtime.runc import RuncRuntime

        async def sweep() -> None:
            rt = await RuncRuntime.open(root / "runtime", images=OCIImageStore(root),
                                        cgroup_root=self.cgroup_root)
            for sb in await rt.list_sandboxes():
                await rt.remove_sandbox(sb.id)
            cgroups.remove(rt.cgroups, self.cgroup_root)

        asyncio.run(sweep())
        mounts.unmount_all(str(root))


def wait_until(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout} s")


@pytest.fixture(scope="module")
def machines() -> Iterator[Machines]:
    if os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("nsenter") is None:
        pytest.skip("two machines need root, runc and nsenter")
    m = Machines(name=f"kj{secrets.token_hex(3)}", base=Path(tempfile.mkdtemp(prefix="klj-")))
    try:
        m.network_up()
        m.start_server()
        m.load_busybox()
        m.start_agent()
        wait_until(lambda: "True" in m.kubectl(
            "get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False).stdout)
        yield m
    finally:
        m.cleanup()


def test_a_machine_joined_by_token_becomes_a_ready_node(machines: Machines):
    assert machines.join.startswith(f"kubelite agent --server https://{SERVER_IP}:")
    assert (machines.base / "agent" / "kubeconfig").exists()
    log = (machines.base / "agent.log").read_text()
    assert f"node {NODE} joined https://{SERVER_IP}:{machines.port}" in log
    lease = machines.kubectl("get", "lease", NODE, "-n", "kube-node-lease", "-o",
                             "jsonpath={.spec.holderIdentity}").stdout
    assert lease == NODE


@pytest.mark.parametrize("what", ["wrong token", "expired token", "wrong CA hash"])
def test_bad_credentials_are_refused_with_a_clear_message(machines: Machines, what: str):
    token = ca_hash = None
    if what == "wrong token":
        token = machines.join.split("--token ")[1].split()[0][:-16] + "0" * 16
    elif what == "expired token":
        token = machines.kubelite("token", "create", "--ttl", "1s", "--data-dir",
                                  str(machines.data)).stdout.strip()
        time.sleep(1.2)
    else:
        ca_hash = "sha256:" + "ab" * 32
    root = machines.base / f"refused-{what.replace(' ', '-')}"
    result = subprocess.run(machines.agent_args(root, token=token, ca_hash=ca_hash),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    if what == "wrong CA hash":
        assert "refusing to join" in message and "sha256:" + "ab" * 32 in message
    else:
        assert "refused the bootstrap token" in message and "expired" in message
    assert not (root / "kubeconfig").exists()


def test_the_node_credential_is_refused_other_nodes_objects(machines: Machines):
    node_config = machines.base / "agent" / "kubeconfig"
    machines.kubectl("create", "secret", "generic", "other-secret", "--from-literal=k=v")
    machines.kubectl("create", "-f", "-",
                     input='{"apiVersion":"v1","kind":"Node","metadata":{"name":"other-node"}}')
    who = machines.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                           kubeconfig=node_config).stdout
    assert who == f"system:node:{NODE}"
    denied = machines.kubectl("get", "secret", "other-secret", kubeconfig=node_config,
                              check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    denied = machines.kubectl("label", "node", "other-node", "x=y", kubeconfig=node_config,
                              check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    machines.kubectl("label", "node", NODE, "joined=yes", kubeconfig=node_config)
    assert machines.kubectl("get", "nodes", kubeconfig=node_config).returncode == 0


def test_token_list_and_delete(machines: Machines):
    token_id = machines.join.split("--token ")[1].split(".")[1]
    listed = machines.kubelite("token", "list", "--data-dir", str(machines.data)).stdout
    assert listed.startswith("TOKEN") and f"kubelite.{token_id}." in listed
    created = machines.kubelite("token", "create", "--data-dir", str(machines.data)).stdout
    new_id = created.strip().split(".")[1]
    deleted = machines.kubelite("token", "delete", new_id, "--data-dir", str(machines.data))
    assert f"bootstrap token {new_id!r} deleted" in deleted.stdout
    assert f"kubelite.{new_id}." not in machines.kubelite(
        "token", "list", "--data-dir", str(machines.data)).stdout


def _busybox_pod(name: str, script: str, *, container: dict | None = None, **spec: object
                 ) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "nodeName": NODE, "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 1, **spec,
        "containers": [{"name": "app", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", script], **(container or {})}]}})


def test_a_joined_node_runs_a_pod_with_a_secret_env_and_a_configmap_volume(machines: Machines):
    m = machines
    m.kubectl("create", "secret", "generic", "app-secret", "--from-literal=password=s3cret")
    m.kubectl("create", "configmap", "app-page", "--from-literal=index=first")
    m.kubectl("create", "-f", "-", input=_busybox_pod(
        "uses-refs", "echo SECRET=$SECRET; while true; do echo PAGE=$(cat /page/index); "
        "sleep 0.5; done",
        container={"env": [{"name": "SECRET", "valueFrom": {"secretKeyRef": {
                       "name": "app-secret", "key": "password"}}}],
                   "volumeMounts": [{"name": "page", "mountPath": "/page"}]},
        volumes=[{"name": "page", "configMap": {"name": "app-page"}}]))
    try:
        def logs() -> str:
            return m.kubectl("logs", "uses-refs", check=False).stdout

        wait_until(lambda: "SECRET=s3cret" in logs() and "PAGE=first" in logs(), timeout=60)
        m.kubectl("patch", "configmap", "app-page", "-p", '{"data":{"index":"second"}}')
        wait_until(lambda: "PAGE=second" in logs(), timeout=30)
        restarts = m.kubectl("get", "pod", "uses-refs", "-o",
                             "jsonpath={.status.containerStatuses[0].restartCount}").stdout
        assert restarts == "0"
    finally:
        m.kubectl("delete", "pod", "uses-refs", "--wait=true", "--timeout=60s", check=False)


_CALL_AGENT = """
import asyncio, ssl, sys, urllib.error, urllib.request
from pathlib import Path
from kubelite.agent import join
server, token, ca_hash, root, own_root, own_name, address, url = sys.argv[1:]
other = asyncio.run(join.join(server=server, token=token, ca_cert_hash=ca_hash,
                              node_name="joined-2", root=Path(root), addresses=(address,)))
own = join.load_credentials(Path(own_root), node_name=own_name)
for creds in (other, own):
    ctx = ssl.create_default_context(cafile=str(creds.ca_cert))
    ctx.load_cert_chain(str(creds.client_cert), str(creds.client_key))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=10) as answer:
            print(answer.status)
    except urllib.error.HTTPError as e:
        print(e.code)
"""


def test_node_certificates_get_403_from_an_agents_endpoints(machines: Machines):
    m = machines
    m.kubectl("create", "-f", "-", input=_busybox_pod("log-target", "echo hello; sleep 3600"))
    try:
        wait_until(lambda: "hello" in m.kubectl("logs", "log-target", check=False).stdout,
                   timeout=60)
        port = m.kubectl("get", "node", NODE, "-o",
                         "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}").stdout
        words = m.join.split()
        option = {w: words[i + 1] for i, w in enumerate(words) if w.startswith("--")}
        url = f"https://{AGENT_IP}:{port}/containerLogs/default/log-target/app"
        # Another node (joined here, never started) and the node itself.
        result = _run(*m.in_ns(m.agent_ns, sys.executable, "-c", _CALL_AGENT, option["--server"],
                                option["--token"], option["--ca-cert-hash"],
                                str(m.base / "second"), str(m.base / "agent"), NODE, AGENT_IP,
                                url))
        assert result.stdout.split() == ["403", "403"]
        # The API server's own proxying still passes.
        assert "hello" in m.kubectl("logs", "log-target").stdout
    finally:
        m.kubectl("delete", "pod", "log-target", "--wait=true", "--timeout=60s", check=False)
