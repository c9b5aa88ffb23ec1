"""Probes and lifecycle hooks: exec (through the runtime), httpGet, tcpSocket and
sleep handlers, and one `ProbeWorker` per (container instance, probe kind).

Network handlers without an explicit `host` connect from inside the pod's
network namespace (netns.py) to the pod IP, or to loopback while pods have no
network of their own; so do kubelet's, which reach the pod IP from the host.
Messages follow kubelet's ("HTTP probe failed with statuscode: 500",
`dial tcp 127.0.0.1:80: connect: connection refused`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kubelite.agent import netns
from kubelite.runtime.base import ContainerID, ContainerRuntime
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ProbeKind = Literal["liveness", "readiness", "startup"]
USER_AGENT = "kube-probe/1.32"
# kubelet keeps at most this much of a failing probe's output in its event.
_MAX_OUTPUT = 10 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """Where a container's handlers run."""

    container_id: ContainerID
    netns_path: str
    pod_ip: str
    ports: dict[str, int] = field(default_factory=dict)


def _port(value: Any, target: Target) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if value in target.ports:
        return target.ports[value]
    raise ValueError(f"port {value!r} not found in the container's ports")


async def run_handler(handler: Obj, *, runtime: ContainerRuntime, target: Target,
                      timeout: float) -> tuple[bool, str]:
    """Run one probe or hook handler: (succeeded, output or failure message)."""
    try:
        if "exec" in handler:
            return await _exec(runtime, target, (handler["exec"] or {}).get("command") or [],
                               timeout)
        if "httpGet" in handler:
            return await asyncio.wait_for(_http_get(handler["httpGet"] or {}, target), timeout)
        if "tcpSocket" in handler:
            return await asyncio.wait_for(_tcp(handler["tcpSocket"] or {}, target), timeout)
        if "sleep" in handler:
            await asyncio.sleep(min(float((handler["sleep"] or {}).get("seconds", 0)), timeout))
            return True, ""
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, ValueError) as e:
        return False, str(e)
    return False, f"unsupported handler {sorted(handler)}"


async def _exec(runtime: ContainerRuntime, target: Target, command: list[str],
                timeout: float) -> tuple[bool, str]:
    proc = await runtime.exec(target.container_id, list(command), tty=False, stdin=False)
    output = bytearray()

    async def drain(stream: Any) -> None:
        async for chunk in stream:
            if len(output) < _MAX_OUTPUT:
                output.extend(chunk[: _MAX_OUTPUT - len(output)])

    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(drain(proc.stdout()), drain(proc.stderr()))
            code = await proc.wait()
    except TimeoutError:
        await proc.kill()
        return False, f"command {' '.join(command)!r} timed out"
    text = output.decode(errors="replace")
    return code == 0, text if code == 0 or text else f"command exited with {code}"


def _address(action: Obj, target: Target) -> tuple[str, str, int]:
    """(netns to connect from, host, port)."""
    port = _port(action.get("port"), target)
    if action.get("host"):
        return "", action["host"], port
    return target.netns_path, target.pod_ip or "127.0.0.1", port


def _dial_error(host: str, port: int, e: OSError) -> str:
    # Go's wording: the errno's text ("connection refused"), not asyncio's message.
    reason = os.strerror(e.errno).lower() if e.errno else str(e)
    return f"dial tcp {host}:{port}: connect: {reason}"


async def _tcp(action: Obj, target: Target) -> tuple[bool, str]:
    ns, host, port = _address(action, target)
    try:
        _reader, writer = await netns.open_connection(ns, host, port)
    except OSError as e:
        return False, _dial_error(host, port, e)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def _http_get(action: Obj, target: Target) -> tuple[bool, str]:
    ns, host, port = _address(action, target)
    scheme = str(action.get("scheme") or "HTTP").lower()
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{port}{path}"
    context = None
    if scheme == "https":
        # kubelet skips certificate verification for probes.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await netns.open_connection(ns, host, port, ssl=context)
    except OSError as e:
        return False, f'Get "{url}": {_dial_error(host, port, e)}'
    try:
        headers = {"Host": f"{host}:{port}", "User-Agent": USER_AGENT, "Accept": "*/*",
                   "Connection": "close"}
        for header in action.get("httpHeaders") or []:
            headers[header.get("name", "")] = header.get("value", "")
        request = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(request.encode())
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.decode(errors="replace").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f'Get "{url}": malformed HTTP response {status_line[:80]!r}'
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        body = await _body(reader)
        message = f"HTTP probe failed with statuscode: {code}"
        return False, message + (f", body: {body}" if body else "")
    except OSError as e:
        return False, f'Get "{url}": {e}'
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _body(reader: asyncio.StreamReader) -> str:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        # Skip the headers; the body follows the first empty line.
        while await reader.readline() not in (b"\r\n", b"\n", b""):
            continue
        return (await reader.read(_MAX_OUTPUT)).decode(errors="replace").strip()
    return ""


ResultHandler = Callable[[ProbeKind, str, bool, str], None]


class ProbeWorker:
    """Runs one probe of one container instance until cancelled. The result flips
    after `successThreshold` consecutive successes or `failureThreshold`
    consecutive failures; `on_result(kind, container, ok, message)` is called on
    every flip, and `on_failure` on every failed attempt (for Unhealthy events)."""

    def __init__(self, kind: ProbeKind, container: str, probe: Obj, *,
                 run: Callable[[float], Awaitable[tuple[bool, str]]],
                 on_result: ResultHandler,
                 on_failure: Callable[[ProbeKind, str, str], None],
                 initial: bool | None = None) -> None:
        self.kind = kind
        self.container = container
        self.probe = probe
        self._run = run
        self._on_result = on_result
        self._on_failure = on_failure
        # None until the thresholds decide; readiness restored from the API after an
        # agent restart starts from what was reported.
        self.result: bool | None = initial
        self._successes = 0
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"{self.kind} probe {self.container}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancelled(self._task)
            self._task = None

    async def _loop(self) -> None:
        p = self.probe
        period = max(float(p.get("periodSeconds") or 10), 0.1)
        timeout = max(float(p.get("timeoutSeconds") or 1), 0.1)
        need_ok = int(p.get("successThreshold") or 1)
        need_fail = int(p.get("failureThreshold") or 3)
        await asyncio.sleep(float(p.get("initialDelaySeconds") or 0))
        while True:
            try:
                ok, message = await self._run(timeout)
            except Exception as e:  # a runtime error is a failed attempt, never the end
                ok, message = False, str(e)
            if ok:
                self._successes, self._failures = self._successes + 1, 0
                if self._successes >= need_ok and self.result is not True:
                    self.result = True
                    self._on_result(self.kind, self.container, True, "")
            else:
                self._failures, self._successes = self._failures + 1, 0
                self._on_failure(self.kind, self.container, message)
                if self._failures >= need_fail and self.result is not False:
                    self.result = False
                    self._on_result(self.kind, self.container, False, message)
                    if self.kind != "readiness":
                        # The container is about to be killed; a new instance gets a new worker.
                        return
            if self.kind == "startup" and self.result:
                return
            await asyncio.sleep(period)
