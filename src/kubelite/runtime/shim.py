"""The per-container shim: the process that outlives the agent, as containerd-shim does.

Run as `python -I -S shim.py` (only the standard library, so that it stays
small): a zygote that forks one shim per request line (see `zygote`). Each shim
becomes a child subreaper, runs `runc create` with the container's stdio and
reports {"id", "ok", "pid", "shim_pid", "error"} as one line on the zygote's
stdout. The shim stays the parent of the container's init after runc exits: it
writes stdout/stderr to the log file in the CRI format with size rotation,
serves attach on a unix socket and, when the init exits, records its exit
status in exit.json. Killing the agent does not touch it.

Attach protocol (both directions, frames of 1 byte kind, 4 bytes big-endian
length, payload). Shim to client: 1 stdout, 2 stderr, 3 exit (4-byte code).
Client to shim: 0 stdin data, 1 close stdin, 2 resize (2+2 bytes width, height).
"""

import ctypes
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import termios
import time

PR_SET_CHILD_SUBREAPER = 36
LINE_MAX = 16 * 1024  # longer lines are split into partial (P) records, as containerd does
DRAIN_AFTER_EXIT = 2.0
# Keeps a shim's report line under PIPE_BUF (4096), the size of an atomic pipe write.
REPORT_ERROR_MAX = 2048


def timestamp(ns: int) -> bytes:
    secs, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z").encode()


class LogWriter:
    def __init__(self, path: str, max_size: int, max_files: int) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max(max_files, 1)
        self.pending = {b"stdout": b"", b"stderr": b""}
        self.f = open(path, "ab") if path else None
        self.size = self.f.tell() if self.f else 0

    def feed(self, stream: bytes, data: bytes) -> None:
        buf = self.pending[stream] + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self.record(stream, b"F", line)
        while len(rest) > LINE_MAX:
            self.record(stream, b"P", rest[:LINE_MAX])
            rest = rest[LINE_MAX:]
        self.pending[stream] = rest

    def flush(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self.record(stream, b"F", rest)
            self.pending[stream] = b""

    def record(self, stream: bytes, tag: bytes, content: bytes) -> None:
        if self.f is None:
            return
        line = b"%s %s %s %s\n" % (timestamp(time.time_ns()), stream, tag, content)
        self.f.write(line)
        self.f.flush()
        self.size += len(line)
        if self.size >= self.max_size:
            self.rotate()

    def rotate(self) -> None:
        assert self.f is not None
        self.f.close()
        for i in range(self.max_files - 1, 0, -1):
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i}")
        if self.max_files == 1:
            os.unlink(self.path)
        self.f = open(self.path, "ab")
        self.size = 0


def runc_error(log_path: str, fallback: bytes) -> str:
    """The last error runc logged (json log lines), or what it printed."""
    msg = ""
    try:
        with open(log_path, "rb") as f:
            for line in f:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if doc.get("level") in ("error", "fatal"):
                    msg = doc.get("msg", msg)
    except OSError:
        pass
    return msg or fallback.decode(errors="replace").strip() or "runc create failed"


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BI", kind, len(payload)) + payload


class Shim:
    def __init__(self, args: dict) -> None:
        self.a = args
        self.sel = selectors.DefaultSelector()
        self.log = LogWriter(args["log_path"], args["log_max_size"], args["log_max_files"])
        self.streams: dict[int, bytes] = {}  # readable fd -> stream name
        self.stdin_fd = -1  # where attach input goes (pipe or pty master)
        self.stdin_buf = b""
        self.master = -1
        self.clients: dict[socket.socket, bytes] = {}
        self.stdin_claimed = False
        self.pid = 0
        self.exit_code: int | None = None
        self.finished_ns = 0

    def create(self) -> dict:
        a = self.a
        null = os.open("/dev/null", os.O_RDWR)
        console = None
        if a["tty"]:
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(a["console_socket"])
            console.listen(1)
            stdio = (null, null, null)
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            in_r = null
            if a["stdin"]:
                in_r, self.stdin_fd = os.pipe()
            stdio = (in_r, out_w, err_w)
            self.streams = {out_r: b"stdout", err_r: b"stderr"}
        argv = [*a["runc"], "create", "--bundle", a["bundle"], "--pid-file", a["pid_file"]]
        if console is not None:
            argv += ["--console-socket", a["console_socket"]]
        proc = subprocess.Popen([*argv, a["id"]], stdin=stdio[0], stdout=stdio[1],
                                stderr=stdio[2])
        if console is not None:
            self.master = self._receive_console(console, proc)
            self.streams = {self.master: b"stdout"}
            self.stdin_fd = self.master if a["stdin"] else -1
        rc = proc.wait()
        for fd in set(stdio) - {null}:
            os.close(fd)
        if rc != 0 or (console is not None and self.master < 0):
            said = b""
            for fd in self.streams:
                os.set_blocking(fd, False)
                try:
                    said += os.read(fd, 65536)
                except OSError:
                    pass
            return {"ok": False, "error": runc_error(a["runc_log"], said)}
        with open(a["pid_file"]) as f:
            self.pid = int(f.read().strip())
        return {"ok": True, "pid": self.pid, "shim_pid": os.getpid()}

    def _receive_console(self, console: socket.socket, proc: subprocess.Popen) -> int:
        console.settimeout(0.1)
        try:
            while proc.poll() is None:
                try:
                    conn, _ = console.accept()
                except TimeoutError:
                    continue
                with conn:
                    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
                return fds[0] if fds else -1
            return -1
        finally:
            console.close()
            os.unlink(self.a["console_socket"])

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        for fd in self.streams:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, "stream")
        if self.stdin_fd >= 0 and self.stdin_fd != self.master:
            os.set_blocking(self.stdin_fd, False)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.a["socket"]):
            os.unlink(self.a["socket"])
        listener.bind(self.a["socket"])
        os.chmod(self.a["socket"], 0o600)
        listener.listen(16)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        self.reap()
        deadline = None
        while True:
            if self.exit_code is not None:
                deadline = deadline or time.monotonic() + DRAIN_AFTER_EXIT
                if not self.streams or time.monotonic() > deadline:
                    break
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in self.sel.select(timeout):
                kind = key.data
                if kind == "wake":
                    os.read(wake_r, 4096)
                    self.reap()
                elif kind == "stream":
                    self.read_stream(key.fd)
                elif kind == "listen":
                    self.accept(listener)
                elif kind == "stdin":
                    self.write_stdin()
                else:
                    self.read_client(key.fileobj)  # type: ignore[arg-type]
        self.finish(listener)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.finished_ns = time.time_ns()
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code

    def read_stream(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # a pty whose other side is gone reads EIO
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            del self.streams[fd]
            if fd != self.master:
                os.close(fd)
            return
        stream = self.streams[fd]
        self.log.feed(stream, data)
        self.broadcast(frame(1 if stream == b"stdout" else 2, data))

    def broadcast(self, data: bytes) -> None:
        for client in list(self.clients):
            try:
                client.sendall(data)
            except OSError:
                self.drop(client)

    def accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        self.clients[client] = b""
        self.sel.register(client, selectors.EVENT_READ, "client")

    def drop(self, client: socket.socket) -> None:
        self.clients.pop(client, None)
        try:
            self.sel.unregister(client)
        except (KeyError, ValueError):
            pass
        client.close()
        if self.a["stdin_once"] and self.stdin_claimed:
            self.close_stdin()

    def read_client(self, client: socket.socket) -> None:
        try:
            data = client.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(client)
            return
        buf = self.clients[client] + data
        while len(buf) >= 5:
            kind, size = struct.unpack(">BI", buf[:5])
            if len(buf) < 5 + size:
                break
            payload, buf = buf[5:5 + size], buf[5 + size:]
            if kind == 0 and self.stdin_fd >= 0:
                self.stdin_claimed = True
                self.stdin_buf += payload
                self.write_stdin()
            elif kind == 1:
                self.stdin_claimed = True
                self.close_stdin()
            elif kind == 2 and self.master >= 0 and size == 4:
                width, height = struct.unpack(">HH", payload)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", height, width, 0, 0))
        if client in self.clients:
            self.clients[client] = buf

    def write_stdin(self) -> None:
        if self.stdin_fd < 0:
            return
        try:
            n = os.write(self.stdin_fd, self.stdin_buf) if self.stdin_buf else 0
        except BlockingIOError:
            n = 0
        except OSError:
            self.stdin_buf, n = b"", 0
        self.stdin_buf = self.stdin_buf[n:]
        if self.stdin_fd == self.master:
            return  # a pty master is always writable enough; it is registered for reading
        registered = self.stdin_fd in self.sel.get_map()
        if self.stdin_buf and not registered:
            self.sel.register(self.stdin_fd, selectors.EVENT_WRITE, "stdin")
        elif not self.stdin_buf and registered:
            self.sel.unregister(self.stdin_fd)

    def close_stdin(self) -> None:
        if self.stdin_fd < 0:
            return
        if self.stdin_fd == self.master:
            os.write(self.master, b"\x04")
        else:
            if self.stdin_fd in self.sel.get_map():
                self.sel.unregister(self.stdin_fd)
            os.close(self.stdin_fd)
        self.stdin_fd = -1

    def finish(self, listener: socket.socket) -> None:
        self.log.flush()
        code = 255 if self.exit_code is None else self.exit_code
        doc = {"exit_code": code, "finished_at": self.finished_ns / 1e9}
        tmp = os.path.join(self.a["dir"], ".exit.json")
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, os.path.join(self.a["dir"], "exit.json"))
        self.broadcast(frame(3, struct.pack(">i", code)))
        for client in list(self.clients):
            client.close()
        listener.close()
        try:
            os.unlink(self.a["socket"])
        except OSError:
            pass


def start(args: dict, report_fd: int) -> None:
    """Become the shim of one container: a session leader and child subreaper, which
    runs `runc create`, writes the outcome as one line to `report_fd` and then serves
    the container until it exits."""
    os.setsid()
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    shim = Shim(args)
    try:
        result = shim.create()
    except Exception as exc:  # reported to the runtime rather than lost with stderr
        result = {"ok": False, "error": f"shim: {exc}"}
    result["id"] = args["id"]
    if len(result.get("error", "")) > REPORT_ERROR_MAX:
        result["error"] = result["error"][:REPORT_ERROR_MAX] + "..."
    # One write below PIPE_BUF is atomic: concurrent shims never interleave lines.
    os.write(report_fd, json.dumps(result).encode() + b"\n")
    os.close(report_fd)
    if result["ok"]:
        shim.serve()
    os._exit(0)


def zygote() -> None:
    """Read one JSON request per line on stdin and start a shim for each, forked from
    this process, which has already paid Python's start-up and imports (some 40 ms of
    CPU per container when every shim was a new interpreter). Each shim is forked
    twice, so that it belongs to no one and outlives this process and the agent; its
    outcome goes to stdout. Ends when the agent closes stdin."""
    requests = os.fdopen(0, "rb", buffering=0)
    for line in iter(requests.readline, b""):
        args = json.loads(line)
        child = os.fork()
        if child == 0:
            os.close(0)
            if os.fork() == 0:
                # Above stdio, which start() points at /dev/null.
                start(args, fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3))
            os._exit(0)
        os.waitpid(child, 0)


if __name__ == "__main__":
    zygote()
