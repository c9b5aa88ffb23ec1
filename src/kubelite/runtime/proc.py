"""Processes identified across agent restarts by (pid, start time), so that a recycled
pid is never mistaken for the process the runtime started."""

from __future__ import annotations

import os
import signal


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    return pid > 0 and started is not None and start_time(pid) == started


def kill(pid: int, started: int | None, sig: int = signal.SIGKILL) -> None:
    if alive(pid, started):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
