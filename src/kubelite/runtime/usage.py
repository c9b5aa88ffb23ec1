"""Resource usage of a cgroup, read the way cAdvisor reads it for kubelet: cumulative
CPU time and the memory working set (usage minus inactive file cache)."""

from __future__ import annotations

import functools
from pathlib import Path

from kubelite.runtime.base import Usage
from kubelite.runtime.cgroups import Hierarchies


@functools.cache
def _cpuacct(h: Hierarchies) -> Path | None:
    """The v1 hierarchy with cpuacct: co-mounted with cpu on most hosts, alone on some."""
    for mount in h.mounts:
        if (mount / "cpuacct.usage").exists():
            return mount
    return None


def _stat(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def read(h: Hierarchies, cgroup: str) -> Usage | None:
    """The cgroup's usage now, or None when it does not exist (any more)."""
    rel = cgroup.strip("/")
    try:
        if h.layout == "v2":
            assert h.unified is not None
            base = h.unified / rel
            cpu = _stat(base / "cpu.stat")["usage_usec"] * 1000
            current = int((base / "memory.current").read_text())
            inactive = _stat(base / "memory.stat").get("inactive_file", 0)
        else:
            acct = _cpuacct(h)
            if acct is None or h.memory is None:
                return None
            cpu = int((acct / rel / "cpuacct.usage").read_text())
            memory = h.memory / rel
            current = int((memory / "memory.usage_in_bytes").read_text())
            inactive = _stat(memory / "memory.stat").get("total_inactive_file", 0)
    except (OSError, KeyError, ValueError):
        return None
    return Usage(cpu_ns=cpu, memory_working_set=max(0, current - inactive))
