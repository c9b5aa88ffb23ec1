"""`ExecProcess`es: `runc exec` with pipes or with a pty, and attach through the shim."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator
from pathlib import Path

from kubelite.runtime import proc
from kubelite.tasks import cancelled


class _Chunks:
    """Bytes from a producer task to one consumer; None ends the stream."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._done = False

    def put(self, data: bytes | None) -> None:
        if not self._done:
            self._queue.put_nowait(data)
            self._done = data is None

    async def iterate(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator


class PipeExec:
    """`runc exec` without a terminal: the process's stdio are runc's (pass-through) pipes."""

    def __init__(self, process: asyncio.subprocess.Process, pid_file: Path) -> None:
        self._p = process
        self._pid_file = pid_file

    async def write_stdin(self, data: bytes) -> None:
        if self._p.stdin is not None and not self._p.stdin.is_closing():
            self._p.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self._p.stdin.drain()

    async def close_stdin(self) -> None:
        if self._p.stdin is not None:
            self._p.stdin.close()

    async def stdout(self) -> AsyncIterator[bytes]:
        assert self._p.stdout is not None
        while chunk := await self._p.stdout.read(65536):
            yield chunk

    async def stderr(self) -> AsyncIterator[bytes]:
        assert self._p.stderr is not None
        while chunk := await self._p.stderr.read(65536):
            yield chunk

    async def resize(self, width: int, height: int) -> None:
        return None

    async def wait(self) -> int:
        code = await self._p.wait()
        self._pid_file.unlink(missing_ok=True)
        return code

    async def kill(self) -> None:
        await _kill_exec(self._p, self._pid_file)


class TtyExec:
    """`runc exec -t` on a pty whose master we hold; runc relays it to the container's own pty,
    resizing that one on SIGWINCH. Output is one stream, as with any terminal."""

    def __init__(self, process: asyncio.subprocess.Process, master: int, pid_file: Path) -> None:
        self._p = process
        self._master = master
        self._pid_file = pid_file
        self._out = _Chunks()
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO once the last holder of the pty's other side is gone
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
        self._out.put(data or None)

    async def write_stdin(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self._master, data):]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return

    async def close_stdin(self) -> None:
        # A terminal has no end of input of its own; ^D is what a user would type.
        await self.write_stdin(b"\x04")

    def stdout(self) -> AsyncIterator[bytes]:
        return self._out.iterate()

    def stderr(self) -> AsyncIterator[bytes]:
        return _empty()

    async def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        with contextlib.suppress(ProcessLookupError):
            self._p.send_signal(signal.SIGWINCH)

    async def wait(self) -> int:
        code = await self._p.wait()
        self._pid_file.unlink(missing_ok=True)
        loop = asyncio.get_running_loop()
        # Output may still sit in the pty after the process is gone; the reader ends at EIO.
        for _ in range(100):
            if self._out._done:
                break
            await asyncio.sleep(0.01)
        loop.remove_reader(self._master)
        self._out.put(None)
        with contextlib.suppress(OSError):
            os.close(self._master)
        return code

    async def kill(self) -> None:
        await _kill_exec(self._p, self._pid_file)


async def _kill_exec(runc: asyncio.subprocess.Process, pid_file: Path) -> None:
    """SIGKILL the exec'd process itself (runc cannot relay SIGKILL); runc then exits."""
    for _ in range(200):  # runc writes the pid file once the process runs
        if runc.returncode is not None:
            return
        try:
            pid = int((await asyncio.to_thread(pid_file.read_text)).strip())
        except (OSError, ValueError):
            await asyncio.sleep(0.01)
            continue
        proc.kill(pid, proc.start_time(pid), signal.SIGKILL)
        return


class ShimAttach:
    """Attached to a container's own stdio through its shim (see shim.py for the frames)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 tty: bool, exit_file: Path) -> None:
        self._reader, self._writer = reader, writer
        self._out, self._err = _Chunks(), _Chunks()
        self._tty = tty
        self._exit_file = exit_file
        self._code: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        code: int | None = None
        try:
            while True:
                kind, size = struct.unpack(">BI", await self._reader.readexactly(5))
                payload = await self._reader.readexactly(size)
                if kind == 1:
                    self._out.put(payload)
                elif kind == 2:
                    self._err.put(payload)
                elif kind == 3:
                    code = struct.unpack(">i", payload)[0]
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._out.put(None)
            self._err.put(None)
            if code is None:
                code = await asyncio.to_thread(_exit_code, self._exit_file)
            if not self._code.done():
                self._code.set_result(code)

    async def _send(self, kind: int, payload: bytes = b"") -> None:
        if self._writer.is_closing():
            return
        self._writer.write(struct.pack(">BI", kind, len(payload)) + payload)
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def write_stdin(self, data: bytes) -> None:
        await self._send(0, data)

    async def close_stdin(self) -> None:
        await self._send(1)

    def stdout(self) -> AsyncIterator[bytes]:
        return self._out.iterate()

    def stderr(self) -> AsyncIterator[bytes]:
        return _empty() if self._tty else self._err.iterate()

    async def resize(self, width: int, height: int) -> None:
        await self._send(2, struct.pack(">HH", width, height))

    async def wait(self) -> int:
        """The container's exit code, or -1 if it is detached before the container exits."""
        return await self._code

    async def kill(self) -> None:
        """Detach; the container keeps running (attach never owns the container)."""
        self._writer.close()
        await cancelled(self._task)
        if not self._code.done():
            self._code.set_result(-1)


def _exit_code(exit_file: Path) -> int:
    try:
        return int(json.loads(exit_file.read_bytes())["exit_code"])
    except (OSError, ValueError, KeyError):
        return -1
