"""`kubelite simulate`: hollow nodes for testing and measuring the control plane."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("simulate", help="register hollow nodes that run pods without containers",
                       description="Register N nodes that keep their Leases alive and report "
                       "their pods Running without starting containers (like kwok).")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--prefix", default="hollow", help="node names are PREFIX-0 .. PREFIX-(N-1)")
    p.add_argument("--cpu", default="32")
    p.add_argument("--memory", default="256Gi")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--zones", type=int, default=0,
                   help="spread the nodes over this many topology.kubernetes.io/zone values")
    p.add_argument("--lease-interval", type=float, default=10.0,
                   help="seconds between Lease renewals (a kubelet's default is 10)")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.client import Client, load_kubeconfig
    from kubelite.scheduler.simulate import HollowNodes, HollowSpec

    # Hollow nodes stand in for kubelets on other machines: they talk HTTPS, as those
    # would, not through the server's local socket.
    config = dataclasses.replace(await asyncio.to_thread(load_kubeconfig, args.kubeconfig),
                                 socket=None)
    spec = HollowSpec(count=args.nodes, prefix=args.prefix, cpu=args.cpu, memory=args.memory,
                      pods=args.max_pods, zones=args.zones,
                      lease_interval=args.lease_interval)

    async def serve(stop: asyncio.Event) -> int:
        async with Client(config, user_agent="kubelite-simulate") as client, \
                HollowNodes(client, spec):
            print(f"{args.nodes} hollow nodes registered", flush=True)
            await stop.wait()
        return 0

    return await run_until_signalled(serve)
