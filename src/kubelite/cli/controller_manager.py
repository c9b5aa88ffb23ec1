"""`kubelite controller-manager`: every controller, as an API client of a server."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("controller-manager", help="run the controllers against a server",
                       description="Run every controller (garbage collector, namespaces, "
                       "workloads, ...) as a client of the API server.")
    p.add_argument("--kubeconfig", type=Path, required=True,
                   help="kubeconfig with the credentials the controllers use")
    p.add_argument("--disable-scheduler", action="store_true",
                   help="do not run the default scheduler in this process")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", metavar="CIDR",
                   help="range the nodes' podCIDRs are allocated from (default 10.244.0.0/16)")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.client import Client, load_kubeconfig
    from kubelite.controllers.manager import ControllerManager
    from kubelite.scheduler.scheduler import CLIENT_CONNECTIONS

    config = await asyncio.to_thread(load_kubeconfig, args.kubeconfig)

    async def serve(stop: asyncio.Event) -> int:
        # The scheduler runs here by default: give the client its connections.
        async with Client(config, user_agent="kubelite-controller-manager",
                          connection_limit=CLIENT_CONNECTIONS) as client, \
                ControllerManager(client, scheduler=not args.disable_scheduler,
                                  cluster_cidr=args.cluster_cidr):
            await stop.wait()
        return 0

    return await run_until_signalled(serve)
