"""`kubelite scheduler`: the default scheduler alone, as an API client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("scheduler", help="run the scheduler against a server",
                       description="Place pending pods on nodes (filter, score, bind).")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--scheduler-name", default="default-scheduler",
                   help="schedule the pods whose spec.schedulerName is this")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.client import Client, InformerFactory, load_kubeconfig
    from kubelite.scheduler.scheduler import Scheduler

    config = await asyncio.to_thread(load_kubeconfig, args.kubeconfig)

    async def serve(stop: asyncio.Event) -> int:
        async with Client(config, user_agent="kubelite-scheduler") as client:
            factory = InformerFactory(client)
            scheduler = Scheduler(client, factory, scheduler_name=args.scheduler_name)
            factory.start()
            task = asyncio.create_task(scheduler.run())
            try:
                await stop.wait()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await factory.stop()
        return 0

    return await run_until_signalled(serve)
