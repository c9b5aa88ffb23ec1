"""`kubelite status`: the `kubelite up` cluster, its nodes and their health."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from kubelite.cli.main import default_data_dir


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("status", help="show a `kubelite up` cluster and its nodes")
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.set_defaults(run=run)
    return p


def _ready(node: dict[str, Any]) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return {"True": "Ready", "False": "NotReady"}.get(c.get("status"), "Unknown")
    return "Unknown"


async def run(args: argparse.Namespace) -> int:
    from kubelite.client import Client, load_kubeconfig
    from kubelite.client.api import find_resource
    from kubelite.cluster.control import NotRunning, call
    from kubelite.cluster.layout import load_layout

    data_dir = args.data_dir.resolve()
    if not (data_dir / "cluster.json").exists():
        print(f"no cluster in {data_dir}", file=sys.stderr)
        return 1
    layout, _ = await asyncio.to_thread(load_layout, data_dir)
    try:
        _, supervisor = await call(layout.control_socket, "GET", "/status")
    except NotRunning:
        print(f"cluster {layout.name}: not running (`kubelite up --data-dir {data_dir}`)")
        return 1
    print(f"cluster {layout.name}: running (pid {supervisor['supervisor_pid']}), "
          f"API server {layout.server_url}, kubeconfig {layout.kubeconfig}")
    api: dict[str, dict[str, Any]] = {}
    try:
        config = await asyncio.to_thread(load_kubeconfig, layout.kubeconfig)
        async with Client(config, read_retries=0, timeout=5) as client:
            items = (await client.list(find_resource("nodes"))).get("items") or []
            api = {n["metadata"]["name"]: n for n in items}
    except Exception as e:  # the API server may be the part that is down
        print(f"API server: not answering ({type(e).__name__})")
    print(f"{'NODE':<10} {'STATUS':<9} {'AGENT':<8} {'NETWORK':<8} {'IP':<15} POD CIDR")
    for node in layout.nodes:
        proc = supervisor["nodes"].get(node.name, {})
        obj = api.get(node.name, {})
        print(f"{node.name:<10} {_ready(obj) if obj else '-':<9} "
              f"{'running' if proc.get('running') else 'stopped':<8} "
              f"{'cut' if proc.get('cut') else 'ok':<8} {node.ip:<15} "
              f"{(obj.get('spec') or {}).get('podCIDR', '-')}")
    return 0
