"""`python -m kubelite.ingress --kubeconfig K --http ADDR:PORT --https ADDR:PORT`:
the ingress controller and its proxy, as one API client process.

`kubelite server --ingress-http/--ingress-https` supervises this process beside
the controller manager: proxied traffic then runs on its own core and never
waits behind API requests in the server's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kubelite.cli.server import parse_listen


def status_addresses(listen: Sequence[tuple[str, int]]) -> list[str]:
    """The listen IPs clients can use, others before loopback; wildcards are left out."""
    ips: list[str] = []
    for host, _ in listen:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not ip.is_unspecified and str(ip) not in ips:
            ips.append(str(ip))
    return sorted(ips, key=lambda i: ipaddress.ip_address(i).is_loopback)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kubelite.ingress",
                                description="Serve networking.k8s.io/v1 Ingresses.")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--http", type=parse_listen, action="append", default=[],
                   metavar="ADDR:PORT", help="serve plain HTTP here (repeatable)")
    p.add_argument("--https", type=parse_listen, action="append", default=[],
                   metavar="ADDR:PORT", help="serve HTTPS here (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.client import Client, InformerFactory, load_kubeconfig
    from kubelite.ingress.controller import IngressController
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
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await factory.stop()
        return 0

    return await run_until_signalled(serve)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
