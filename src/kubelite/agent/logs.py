"""Reading container logs in the CRI format the runtime writes, as kubelet's
`/containerLogs` does (follow, tailLines, timestamps, sinceSeconds/sinceTime,
limitBytes).

Each line of a log file is `TIMESTAMP STREAM TAG CONTENT` with an RFC 3339
nanosecond timestamp, stream `stdout` or `stderr`, and tag `F` for a full line
(its newline was stripped) or `P` for a part of a longer line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

# How often a follower looks for new lines; kubelet waits on inotify, which a
# short poll of one file matches closely enough for humans watching logs.
FOLLOW_POLL = 0.1


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: bytes
    time: float
    stream: str
    full: bool
    content: bytes  # with its newline when `full`


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since: float | None = None  # epoch seconds
    limit_bytes: int | None = None


def parse_time(raw: bytes) -> float:
    text = raw.decode()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    base, _, rest = text.partition(".")
    frac, tz = "", "+00:00"
    if rest:
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                frac, tz = rest[:i], rest[i:]
                break
        else:
            frac = rest
    elif "+" in base[10:] or "-" in base[10:]:
        return dt.datetime.fromisoformat(text).timestamp()
    stamp = dt.datetime.fromisoformat(base + tz).timestamp()
    return stamp + (float(f"0.{frac}") if frac else 0.0)


def parse_line(raw: bytes) -> LogLine | None:
    """One CRI log line (without its trailing newline); None when malformed."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    stamp, stream, tag = parts[0], parts[1], parts[2]
    content = parts[3] if len(parts) == 4 else b""
    try:
        when = parse_time(stamp)
    except ValueError:
        return None
    full = tag.split(b":", 1)[0] != b"P"
    return LogLine(stamp, when, stream.decode(errors="replace"), full,
                   content + b"\n" if full else content)


def render(line: LogLine, opts: LogOptions, at_line_start: bool) -> bytes:
    if opts.timestamps and at_line_start:
        return line.timestamp + b" " + line.content
    return line.content


def select(lines: list[LogLine], opts: LogOptions) -> list[LogLine]:
    """Apply sinceTime and tailLines (counted in whole lines, parts joined)."""
    if opts.since is not None:
        lines = [ln for ln in lines if ln.time >= opts.since]
    if opts.tail_lines is not None:
        if opts.tail_lines <= 0:
            return []
        seen = 0
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].full:
                seen += 1
                if seen > opts.tail_lines:
                    return lines[i + 1:]
    return lines


def _read_lines(path: Path) -> tuple[list[LogLine], int, int]:
    """Every complete line of the file, the offset after the last one, and its inode."""
    with open(path, "rb") as f:
        data = f.read()
        inode = os.fstat(f.fileno()).st_ino
    end = data.rfind(b"\n") + 1
    lines = [p for raw in data[:end].splitlines() if (p := parse_line(raw)) is not None]
    return lines, end, inode


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as f:
            inode = os.fstat(f.fileno()).st_ino
            f.seek(offset)
            return f.read(), inode
    except FileNotFoundError:
        return b"", -1


class _Writer:
    def __init__(self, write: Callable[[bytes], Awaitable[None]], opts: LogOptions) -> None:
        self.write = write
        self.opts = opts
        self.left = opts.limit_bytes
        self.at_line_start = True

    async def emit(self, line: LogLine) -> bool:
        """Write one line; False once limitBytes is used up."""
        data = render(line, self.opts, self.at_line_start)
        self.at_line_start = line.full
        if self.left is not None:
            data = data[: self.left]
            self.left -= len(data)
        if data:
            await self.write(data)
        return self.left is None or self.left > 0


async def stream_log(path: Path, opts: LogOptions, *, write: Callable[[bytes], Awaitable[None]],
                     running: Callable[[], Awaitable[bool]]) -> None:
    """Write the selected lines; with `follow`, keep writing new ones until the
    container has stopped and the file has no more to give."""
    try:
        lines, offset, inode = await asyncio.to_thread(_read_lines, path)
    except FileNotFoundError:
        lines, offset, inode = [], 0, -1
    out = _Writer(write, opts)
    for line in select(lines, opts):
        if not await out.emit(line):
            return
    if not opts.follow:
        return
    pending = b""
    while True:
        # Asked before reading, so that lines written just before the exit are not lost.
        stopped = not await running()
        data, now_inode = await asyncio.to_thread(_read_from, path, offset)
        if now_inode not in (inode, -1):
            # Rotated: the runtime started a new file at the same path.
            inode, offset, pending = now_inode, 0, b""
            continue
        if data:
            offset += len(data)
            pending += data
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = parse_line(raw)
                if line is None or (opts.since is not None and line.time < opts.since):
                    continue
                if not await out.emit(line):
                    return
            continue
        if stopped:
            return
        await asyncio.sleep(FOLLOW_POLL)
