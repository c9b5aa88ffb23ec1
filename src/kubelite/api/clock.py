"""Timestamps as Kubernetes writes them (RFC 3339, whole seconds, UTC)."""

from __future__ import annotations

import time

_formatted: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """Now; formatted once a second, since every write and every Event asks for it."""
    global _formatted
    second = int(time.time())
    if second != _formatted[0]:
        _formatted = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _formatted[1]
