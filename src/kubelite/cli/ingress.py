"""`kubelite ingress`: the ingress controller and its proxy, as one API client process.

`kubelite server --ingress-http/--ingress-https` supervises this process beside
the controller manager: proxied traffic then runs on its own core and never
waits behind API requests in the server's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from kubelite.cli.server import parse_listen
from kubelite.tasks import cancelled


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ingress", help="serve Ingresses (HTTP and HTTPS reverse proxy)",
                       description="Serve networking.k8s.io/v1 Ingresses of the IngressClass "
                       "`kubelite` as a client of the API server.")
    p.add_argument("--kubeconfig", type=Path, required=True,
                   help="kubeconfig with the credentials the ingress controller uses")
    p.add_argument("--http", type=parse_listen, action="append", default=[],
                   metavar="ADDR:PORT", help="serve plain HTTP here (repeatable)")
    p.add_argument("--https", type=parse_listen, action="append", default=[],
                   metavar="ADDR:PORT", help="serve HTTPS here (repeatable)")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.client import Client, InformerFactory, load_kubeconfig
    from kubelite.ingress.controller import IngressController, status_addresses
    from kubelite.ingress.proxy import IngressProxy

    config = await asyncio.to_thread(load_kubeconfig, args.kubeconfig)

    async def serve(stop: asyncio.Event) -> int:
        async with Client(config, user_agent="kubelite-ingress") as client, \
                IngressProxy(http=args.http, https=args.https) as proxy:
            factory = InformerFactory(client)
            controller = IngressController(
                client, factory, proxy=proxy,
                status_addresses=status_addresses([*args.http, *args.https]))
            task = asyncio.create_task(controller.run(), name=controller.name)
            try:
                await stop.wait()
            finally:
                controller.stop()
                await cancelled(task)
                await factory.stop()
        return 0

    return await run_until_signalled(serve)
