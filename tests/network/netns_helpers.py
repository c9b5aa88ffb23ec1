"""Network namespaces for network tests: unique names from the test's tmp dir, all
deleted at the end (with them every veth, bridge, route and nftables table inside)."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=20)


def tag_of(tmp_path: Path) -> str:
    return hashlib.sha1(str(tmp_path).encode()).hexdigest()[:6]


def in_ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("nsenter", f"--net=/var/run/netns/{ns}", *cmd, check=check)


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[list[str]]:
    made: list[str] = []
    try:
        for ns in names:
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield made
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
