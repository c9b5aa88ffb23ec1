"""`kubelite scheduler`: the scheduler alone, as an API client."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from kubelite.client import Client, InformerFactory, load_kubeconfig, strip_managed_fields
from kubelite.scheduler.config import SchedulerConfiguration, load_config
from kubelite.scheduler.scheduler import CLIENT_CONNECTIONS, Scheduler
from kubelite.tasks import cancelled


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("scheduler", help="run the scheduler against a server",
                       description="Place pending pods on nodes (filter, score, bind).")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--config", type=Path,
                   help="a KubeSchedulerConfiguration file (profiles, plugins, weights)")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled

    client_config = await asyncio.to_thread(load_kubeconfig, args.kubeconfig)
    config = (await asyncio.to_thread(load_config, args.config) if args.config
              else SchedulerConfiguration())

    async def serve(stop: asyncio.Event) -> int:
        async with Client(client_config, user_agent="kubelite-scheduler",
                          connection_limit=CLIENT_CONNECTIONS) as client:
            factory = InformerFactory(client, transform=strip_managed_fields)
            scheduler = Scheduler(client, factory, config=config)
            factory.start()
            task = asyncio.create_task(scheduler.run())
            try:
                await asyncio.wait([task, asyncio.create_task(stop.wait())],
                                   return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    task.result()
            finally:
                await cancelled(task)
                await factory.stop()
        return 0

    return await run_until_signalled(serve)
