"""`kubelite server`: the API server on its embedded store."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

# Recent events kept in memory for watches; older ones are read back from SQLite, so
# this only trades memory for the speed of long-lagging resumptions.
STORE_EVENT_WINDOW = 2000


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("server", help="run the API server",
                       description="Run the API server (HTTPS) on an embedded SQLite store.")
    p.add_argument("--data-dir", type=Path, default=Path("/var/lib/kubelite"),
                   help="where the store, certificates and kubeconfig live")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 6443),
                   metavar="HOST:PORT", help="address to serve on (default 127.0.0.1:6443)")
    p.add_argument("--tls-san", action="append", default=[], metavar="NAME",
                   help="extra name or IP for the serving certificate")
    p.add_argument("--service-cidr", default="10.96.0.0/16", metavar="CIDR",
                   help="range of Service ClusterIPs (default 10.96.0.0/16)")
    p.add_argument("--disable-controllers", action="store_true",
                   help="do not start the controller manager beside the API server")
    p.add_argument("--disable-scheduler", action="store_true",
                   help="do not run the default scheduler (it runs in the controller "
                   "manager's process)")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.cli.supervise import Supervised
    from kubelite.server.app import APIServer, ServerConfig
    from kubelite.store.sqlite import SqliteStore

    host, port = args.listen
    config = ServerConfig(data_dir=args.data_dir, host=host, port=port,
                          extra_sans=tuple(args.tls_san), service_cidr=args.service_cidr)

    async def serve(stop: asyncio.Event) -> int:
        store = SqliteStore(args.data_dir / "state.db", window=STORE_EVENT_WINDOW)
        async with APIServer(config, store) as server, contextlib.AsyncExitStack() as stack:
            assert server.credentials is not None
            kubeconfig = server.credentials.kubeconfig
            if not args.disable_controllers:
                await stack.enter_async_context(Supervised.kubelite(
                    "controller-manager", "controller-manager", "--kubeconfig", str(kubeconfig),
                    *(["--disable-scheduler"] if args.disable_scheduler else [])))
            print(f"kubelite API server on https://{host}:{port}", flush=True)
            print(f"export KUBECONFIG={kubeconfig}", flush=True)
            await stop.wait()
        return 0

    return await run_until_signalled(serve)
