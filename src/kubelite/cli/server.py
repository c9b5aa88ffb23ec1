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
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", metavar="CIDR",
                   help="range of pod IPs; each node gets a /24 of it (default 10.244.0.0/16)")
    p.add_argument("--disable-controllers", action="store_true",
                   help="do not start the controller manager beside the API server")
    p.add_argument("--disable-scheduler", action="store_true",
                   help="do not run the default scheduler (it runs in the controller "
                   "manager's process)")
    p.add_argument("--ingress-http", type=parse_listen, action="append", default=[],
                   metavar="ADDR:PORT", help="serve Ingresses over HTTP here (repeatable)")
    p.add_argument("--ingress-https", type=parse_listen, action="append", default=[],
                   metavar="ADDR:PORT", help="serve Ingresses over HTTPS here (repeatable)")
    p.add_argument("--cluster-dns", type=_dns_address, default=None, metavar="ADDR[:PORT]",
                   help="serve cluster DNS here (port 53 by default) and publish it as "
                   "Service kube-system/kube-dns at 10.96.0.10")
    p.set_defaults(run=run)
    return p


def _dns_address(value: str) -> tuple[str, int]:
    from kubelite.network.dns import parse_address
    try:
        return parse_address(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ADDR[:PORT], got {value!r}") from exc


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled
    from kubelite.cli.supervise import Supervised
    from kubelite.cli.token import print_join_command
    from kubelite.client import load_kubeconfig
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
                    "--cluster-cidr", args.cluster_cidr,
                    *(["--disable-scheduler"] if args.disable_scheduler else [])))
            if args.ingress_http or args.ingress_https:
                from kubelite.ingress.supervise import ingress_process
                await stack.enter_async_context(ingress_process(
                    kubeconfig, http=args.ingress_http, https=args.ingress_https))
            if args.cluster_dns:
                from kubelite.network.dns import serving as dns_serving
                dns_host, dns_port = args.cluster_dns
                await stack.enter_async_context(dns_serving(kubeconfig, host=dns_host,
                                                            port=dns_port))
            print(f"kubelite API server on https://{host}:{port}", flush=True)
            print(f"export KUBECONFIG={kubeconfig}", flush=True)
            await print_join_command(await asyncio.to_thread(load_kubeconfig, kubeconfig),
                                     host=host, port=port)
            await stop.wait()
        return 0

    return await run_until_signalled(serve)
