"""The host's cgroup hierarchies: which layout (v1, hybrid, unified), where a cgroup
path lives in each, its OOM kill count, and removal of what runc leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Layout = Literal["v1", "hybrid", "v2"]


@dataclass(frozen=True, slots=True)
class Hierarchies:
    layout: Layout
    mounts: tuple[Path, ...]  # every cgroup mount point (each v1 hierarchy and the v2 one)
    memory: Path | None  # where memory accounting lives (v1 memory controller or v2)
    cpu: Path | None
    unified: Path | None

    def dirs(self, cgroup: str) -> list[Path]:
        rel = cgroup.strip("/")
        return [m / rel for m in self.mounts]


def detect() -> Hierarchies:
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = right.split()[:3]
            point = Path(left.split()[4])
            if fstype == "cgroup2":
                v2 = point
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt not in ("rw", "ro", "relatime", "noexec", "nosuid", "nodev"):
                        v1.setdefault(opt, point)
    mounts = tuple(sorted(set(v1.values()))) + ((v2,) if v2 else ())
    if not v1:
        return Hierarchies("v2", mounts, v2, v2, v2)
    return Hierarchies("hybrid" if v2 else "v1", mounts, v1.get("memory"), v1.get("cpu"), v2)


def oom_kills(h: Hierarchies, cgroup: str) -> int:
    """How many processes the kernel's OOM killer took from `cgroup`."""
    if h.memory is None:
        return 0
    name = "memory.events" if h.layout == "v2" else "memory.oom_control"
    try:
        text = (h.memory / cgroup.strip("/") / name).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def remove(h: Hierarchies, cgroup: str, *, timeout: float = 2.0) -> None:
    """Kill anything left in `cgroup` and remove it with its children from every hierarchy.

    Blocking; run in a worker thread.
    """
    deadline = time.monotonic() + timeout
    for top in h.dirs(cgroup):
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            _rmdir(Path(dirpath), deadline)


def _rmdir(path: Path, deadline: float) -> None:
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
        with contextlib.suppress(OSError):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.02)
