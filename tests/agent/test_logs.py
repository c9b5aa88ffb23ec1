"""CRI log reading: parsing, selection, rendering and following."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubelite.agent.logs import LogOptions, parse_line, parse_time, stream_log

LINES = [
    b"2024-05-01T12:00:00.000000001Z stdout F first",
    b"2024-05-01T12:00:01.5Z stderr F second",
    b"2024-05-01T12:00:02.000000000Z stdout P par",
    b"2024-05-01T12:00:02.100000000Z stdout F tial",
    b"2024-05-01T12:00:03.000000000Z stdout F last",
]
T0 = parse_time(b"2024-05-01T12:00:00Z")


def test_parse_line() -> None:
    line = parse_line(LINES[2])
    assert line is not None and not line.full and line.content == b"par"
    assert line.stream == "stdout"
    assert parse_line(b"garbage") is None
    assert parse_time(b"2024-05-01T12:00:01.5Z") == pytest.approx(T0 + 1.5)
    assert parse_time(b"2024-05-01T14:00:00+02:00") == pytest.approx(T0)


async def read(path: Path, opts: LogOptions) -> bytes:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    async def running() -> bool:
        return False

    await stream_log(path, opts, write=write, running=running)
    return bytes(out)


@pytest.mark.parametrize(("opts", "want"), [
    (LogOptions(), b"first\nsecond\npartial\nlast\n"),
    (LogOptions(tail_lines=2), b"partial\nlast\n"),
    (LogOptions(tail_lines=0), b""),
    (LogOptions(since=T0 + 1), b"second\npartial\nlast\n"),
    (LogOptions(limit_bytes=8), b"first\nse"),
    (LogOptions(timestamps=True, tail_lines=2),
     b"2024-05-01T12:00:02.000000000Z partial\n2024-05-01T12:00:03.000000000Z last\n"),
], ids=["all", "tail", "tail-zero", "since", "limit-bytes", "timestamps"])
async def test_select_and_render(tmp_path: Path, opts: LogOptions, want: bytes) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    assert await read(path, opts) == want


async def test_follow_until_container_stops(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LINES[0] + b"\n")
    alive = {"yes": True}
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    async def running() -> bool:
        return alive["yes"]

    task = asyncio.create_task(stream_log(path, LogOptions(follow=True), write=write,
                                          running=running))
    await asyncio.sleep(0.15)
    with open(path, "ab") as f:
        f.write(LINES[4] + b"\n")
    await asyncio.sleep(0.3)
    assert bytes(out) == b"first\nlast\n"
    with open(path, "ab") as f:
        f.write(b"2024-05-01T12:00:04Z stdout F after-exit\n")
    alive["yes"] = False
    await asyncio.wait_for(task, 2)
    assert bytes(out) == b"first\nlast\nafter-exit\n"


async def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert await read(tmp_path / "none.log", LogOptions()) == b""
