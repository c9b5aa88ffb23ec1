"""`kubelite node stop|start|cut|heal NAME`: fail a node of a `kubelite up` cluster by
hand, as a machine fails: stop powers it off (its agent and containers), cut pulls
its network cable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubelite.cli.main import default_data_dir


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("node", help="stop, start, cut off or heal a node of `kubelite up`")
    p.add_argument("op", choices=("stop", "start", "cut", "heal"))
    p.add_argument("name")
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cluster.control import NotRunning, call

    try:
        code, body = await call(args.data_dir.resolve() / "control.sock", "POST",
                                f"/nodes/{args.name}/{args.op}")
    except NotRunning:
        print(f"error: no cluster is running from {args.data_dir}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"error: {body.get('error')}", file=sys.stderr)
        return 1
    print(body["message"])
    return 0
