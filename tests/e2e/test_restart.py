"""SIGTERM shuts the server down cleanly; a restart keeps objects and credentials."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Server, free_port

pytestmark = pytest.mark.e2e


def test_sigterm_then_restart_keeps_objects_and_credentials(tmp_path):
    server = Server(data_dir=tmp_path / "data", port=free_port())
    server.start()
    try:
        server.kubectl("create", "configmap", "kept", "--from-literal=a=b")
        kubeconfig = server.kubeconfig.read_text()
        ca = (server.data_dir / "pki" / "ca.crt").read_bytes()
        proc = server.proc
        server.stop()
        assert proc is not None and proc.returncode == 0
        server.start()
        assert server.kubeconfig.read_text() == kubeconfig
        assert (server.data_dir / "pki" / "ca.crt").read_bytes() == ca
        assert server.kubectl_json("get", "configmap", "kept")["data"] == {"a": "b"}
    finally:
        server.stop()
