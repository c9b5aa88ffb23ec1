"""`kubelite down [--purge]`: remove everything `kubelite up` put on the host."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

from kubelite.cli.main import default_data_dir


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("down", help="stop a `kubelite up` cluster and remove what it created",
                       description="Stop the cluster and remove its processes, containers, "
                                   "network namespaces, links, routes, firewall rules, mounts "
                                   "and cgroups. --purge also removes the data directory.")
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--purge", action="store_true", help="also remove the data directory")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cluster import teardown
    from kubelite.cluster.control import NotRunning, call
    from kubelite.cluster.layout import load_layout

    data_dir = args.data_dir.resolve()
    if not (data_dir / "cluster.json").exists():
        print(f"no cluster in {data_dir}", file=sys.stderr)
        return 0 if not data_dir.exists() or not args.purge else await _purge(data_dir)
    layout, status = await asyncio.to_thread(load_layout, data_dir)
    try:
        await call(layout.control_socket, "POST", "/shutdown")
        pid = int(status.get("supervisor_pid") or 0)
        deadline = time.monotonic() + 30
        while pid and teardown.alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    except NotRunning:
        pass  # killed or never started: what it left is removed below all the same
    await teardown.remove_cluster(layout)
    print(f"cluster {layout.name} removed")
    if args.purge:
        return await _purge(data_dir)
    await asyncio.to_thread(layout.save, ready=False, stopped=True)
    return 0


async def _purge(data_dir: Path) -> int:
    from kubelite.runtime import mounts

    await asyncio.to_thread(mounts.unmount_all, str(data_dir))
    await asyncio.to_thread(shutil.rmtree, data_dir, True)
    print(f"removed {data_dir}")
    return 0
