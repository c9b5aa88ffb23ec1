"""The ingress process as `kubelite server` runs it: supervised, restarted when it dies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kubelite.cli.supervise import Supervised


def ingress_process(kubeconfig: Path, *, http: Sequence[tuple[str, int]] = (),
                    https: Sequence[tuple[str, int]] = ()) -> Supervised:
    """`async with ingress_process(kc, http=[("127.0.0.1", 80)]):` runs
    `kubelite ingress` until exit."""
    args = ["--kubeconfig", str(kubeconfig)]
    for flag, addresses in (("--http", http), ("--https", https)):
        for host, port in addresses:
            args += [flag, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    return Supervised.kubelite("ingress", "ingress", *args)
