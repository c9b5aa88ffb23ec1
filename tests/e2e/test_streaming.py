"""kubectl logs / exec / attach / port-forward and the PyPI client's stream()
and portforward(), through a real API server to a test double of the node
agent (tests/streaming/fake_agent.py: the real agent endpoints on a fake
runtime of local processes; port-forward reaches a loopback echo server)."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from tests.e2e.conftest import Server, free_port
from tests.streaming.fake_agent import (
    FakeAgent,
    FakePod,
    log_line,
    log_path,
    node_status,
    pod_manifest,
)

pytestmark = pytest.mark.e2e

NODE = "fake-node"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, FakeAgent]]:
    base = tmp_path_factory.mktemp("streaming")
    srv = Server(data_dir=base / "data", port=free_port())
    srv.start()
    agent = None
    try:
        pods = [FakePod("default", "web", log_lines=["one", "two", "three"]),
                FakePod("default", "duo", containers=("a", "b"), uid="uid-2")]
        work = base / "agent"
        work.mkdir()
        agent = FakeAgent(pods=pods, data_dir=srv.data_dir, workdir=work)
        agent.start()
        import json
        srv.kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}))
        srv.kubectl("patch", "node", NODE, "--subresource=status", "--type=merge",
                    "-p", json.dumps(node_status(agent.port)))
        for pod in pods:
            srv.kubectl("create", "-f", "-", input=json.dumps(pod_manifest(pod, NODE)))
            srv.kubectl("patch", "pod", pod.name, "--subresource=status", "--type=merge",
                        "-p", '{"status":{"phase":"Running"}}')
        yield srv, agent
    finally:
        if agent is not None:
            agent.stop()
        srv.stop()


@pytest.fixture
def server(cluster: tuple[Server, FakeAgent]) -> Server:
    return cluster[0]


@pytest.fixture
def agent(cluster: tuple[Server, FakeAgent]) -> FakeAgent:
    return cluster[1]


@pytest.mark.parametrize(("args", "stdin", "stdout", "stderr", "code"), [
    (["--", "echo", "hi", "there"], None, "hi there\n", "", 0),
    (["-i", "--", "cat"], "input-data\n", "input-data\n", "", 0),
    (["--", "sh", "-c", "echo out; echo err >&2"], None, "out\n", "err\n", 0),
    (["--", "sh", "-c", "exit 3"], None, "", "command terminated with exit code 3\n", 3),
], ids=["echo", "stdin-to-cat", "stdout-and-stderr", "exit-code-propagates"])
def test_kubectl_exec(server: Server, args: list[str], stdin: str | None, stdout: str,
                      stderr: str, code: int) -> None:
    result = server.kubectl("exec", "web", *args, input=stdin, check=False, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (code, stdout, stderr)


def test_kubectl_exec_with_a_terminal(server: Server) -> None:
    """`kubectl exec -it` on a pty: the remote shell sees a terminal of kubectl's size."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(KUBECONFIG=str(server.kubeconfig), HOME=str(server.data_dir.parent))
        os.execvp("kubectl", ["kubectl", "exec", "-it", "web", "--", "sh"])
    try:
        os.write(fd, b"[ -t 0 ] && echo tty-$((6*7)); stty size; exit 5\n")
        output = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert b"tty-42" in output
    assert re.search(rb"\d+ \d+", output)
    assert os.waitstatus_to_exitcode(status) == 5


@pytest.mark.parametrize(("args", "want"), [
    ([], "one\ntwo\nthree\n"),
    (["--tail=1"], "three\n"),
    (["-f", "--tail=2"], "two\nthree\n"),
    (["--timestamps", "--tail=1"], "2024-01-01T00:00:02.000000000Z three\n"),
], ids=["all", "tail", "follow", "timestamps"])
def test_kubectl_logs(server: Server, args: list[str], want: str) -> None:
    assert server.kubectl("logs", "web", *args, timeout=30).stdout == want


def test_kubectl_logs_follow_streams_new_lines(server: Server, agent: FakeAgent) -> None:
    pod = agent.runtime.pods[0]
    pod.following.set()
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig), "HOME": str(server.data_dir.parent)}
    proc = subprocess.Popen(["kubectl", "logs", "-f", "--tail=1", "web"], stdout=subprocess.PIPE,
                            env=env, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "three\n"
        with open(log_path(pod, agent.runtime.workdir), "a") as f:
            f.write(log_line(3, "four"))
        assert proc.stdout.readline() == "four\n"
        pod.following.clear()
        assert proc.wait(10) == 0
    finally:
        pod.following.clear()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kubectl_attach(server: Server) -> None:
    result = server.kubectl("attach", "-i", "web", input="hello\n", timeout=30)
    assert "attached\nhello\n" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["exec", "nope", "--", "true"], 'pods "nope" not found'),
    (["exec", "web", "-c", "x", "--", "true"], "container x is not valid for pod web"),
    (["exec", "duo", "-c", "gone", "--", "true"], "container gone is not valid for pod duo"),
    (["logs", "web", "-c", "x"], "container x is not valid for pod web"),
], ids=["missing-pod", "unknown-container", "unknown-container-of-two", "logs-unknown"])
def test_errors_reach_kubectl(server: Server, args: list[str], message: str) -> None:
    result = server.kubectl(*args, check=False, timeout=30)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def _echo_through(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_kubectl_port_forward(server: Server, agent: FakeAgent) -> None:
    local = free_port()
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig), "HOME": str(server.data_dir.parent)}
    proc = subprocess.Popen(["kubectl", "port-forward", "pod/web", f"{local}:{agent.echo_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert f"Forwarding from 127.0.0.1:{local}" in line, line + (proc.stderr.read() if proc.stderr else "")
        assert _echo_through(local, b"ping\n") == b"ping\n"
        big = os.urandom(300_000)
        assert _echo_through(local, big) == big
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)


def test_kubectl_port_forward_to_closed_port_reports_error(server: Server) -> None:
    local = free_port()
    env = {**os.environ, "KUBECONFIG": str(server.kubeconfig), "HOME": str(server.data_dir.parent)}
    proc = subprocess.Popen(["kubectl", "port-forward", "pod/web", f"{local}:{free_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None and "Forwarding from" in proc.stdout.readline()
        with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
            sock.settimeout(10)
            assert sock.recv(10) == b""
        proc.wait(20)
        assert proc.stderr is not None
        assert "error forwarding port" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def core(server: Server) -> Iterator[client.CoreV1Api]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


def test_python_client_exec(core: client.CoreV1Api) -> None:
    out = stream(core.connect_get_namespaced_pod_exec, "web", "default",
                 command=["sh", "-c", "echo py-$((1+1))"], stderr=True, stdin=False,
                 stdout=True, tty=False)
    assert out == "py-2\n"
    resp = stream(core.connect_get_namespaced_pod_exec, "web", "default",
                  command=["sh", "-c", "read x; echo got-$x; exit 7"], stderr=True, stdin=True,
                  stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("abc\n")
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == "got-abc\n"
    assert resp.returncode == 7


def test_python_client_portforward(core: client.CoreV1Api, agent: FakeAgent) -> None:
    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "default",
                     ports=str(agent.echo_port))
    sock = pf.socket(agent.echo_port)
    sock.settimeout(10)
    sock.sendall(b"hello-pf")
    got = b""
    while len(got) < 8:
        got += sock.recv(1024)
    assert got == b"hello-pf"
    sock.close()
    assert pf.error(agent.echo_port) is None
