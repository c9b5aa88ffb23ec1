"""Acknowledged writes survive SIGKILL of the server."""

from __future__ import annotations

import signal
import threading
import time

import orjson
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_bad_input import CM_PATH, Raw
from tests.ports import free_port

pytestmark = pytest.mark.e2e


def test_sigkill_during_concurrent_creates_keeps_acknowledged(tmp_path):
    server = Server(data_dir=tmp_path / "data", port=free_port())
    server.start()
    try:
        raw = Raw(server)
        acknowledged: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def creator(worker: int) -> None:
            i = 0
            while not stop.is_set():
                name = f"durable-{worker}-{i}"
                body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": name}, "data": {"i": str(i)}})
                try:
                    code, _ = raw.request("POST", CM_PATH, body)
                except OSError:
                    return
                if code == 201:
                    with lock:
                        acknowledged.append(name)
                i += 1

        threads = [threading.Thread(target=creator, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(acknowledged) < 300:
            time.sleep(0.05)
        server.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(15)
        assert len(acknowledged) >= 100
        server.start()
        raw = Raw(server)
        code, listed = raw.request("GET", CM_PATH)
        assert code == 200
        stored = {item["metadata"]["name"] for item in listed["items"]}
        missing = [name for name in acknowledged if name not in stored]
        assert missing == []
    finally:
        server.stop()
