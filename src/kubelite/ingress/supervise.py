"""The ingress process as `kubelite server` runs it: supervised, restarted when it dies."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kubelite.cli.supervise import Supervised


def ingress_process(kubeconfig: Path, *, http: Sequence[tuple[str, int]] = (),
                    https: Sequence[tuple[str, int]] = ()) -> Supervised:
    """`async with ingress_process(kc, http=[("127.0.0.1", 80)]):` runs
    `python -m kubelite.ingress` until exit."""
    argv = [sys.executable, "-m", "kubelite.ingress", "--kubeconfig", str(kubeconfig)]
    for flag, addresses in (("--http", http), ("--https", https)):
        for host, port in addresses:
            argv += [flag, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    return Supervised("ingress", argv)
