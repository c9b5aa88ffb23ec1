"""`kubelite agent`: the node agent (kubelet) of one node, as an API client."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
from pathlib import Path

from kubelite.agent.agent import run as run_agent
from kubelite.agent.config import DEFAULT_PORT, AgentConfig
from kubelite.client import ClientConfig, load_kubeconfig

DEFAULT_ROOT = Path("/var/lib/kubelite/agent")


def _label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("agent", help="run the node agent",
                       description="Register this machine as a Node and run the pods bound to it "
                                   "with runc.")
    p.add_argument("--server", help="API server URL (overrides the kubeconfig's)")
    p.add_argument("--kubeconfig", type=Path,
                   help="credentials of the node (without it: join with --token)")
    p.add_argument("--token", help="bootstrap token to join with (kubelite token create)")
    p.add_argument("--ca-cert-hash", metavar="sha256:HEX",
                   help="pinned hash of the cluster CA's public key, required with --token")
    p.add_argument("--node-name", default=socket.gethostname())
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                   help=f"the agent's state: images, containers, volumes, logs (default {DEFAULT_ROOT})")
    p.add_argument("--runtime", choices=("runc", "crun"), default="runc")
    p.add_argument("--cgroup-root", default="",
                   help="cgroup under which pods get theirs (default: the runtime's, /kubelite)")
    p.add_argument("--node-ip", default="", help="InternalIP to report (default: detected)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"HTTPS port for logs, exec, attach, port-forward (default {DEFAULT_PORT})")
    p.add_argument("--address", default="0.0.0.0", help="address the HTTPS endpoint listens on")
    p.add_argument("--lease-interval", type=float, default=1.0,
                   help="seconds between node lease renewals (Kubernetes: 10)")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--cluster-dns", action="append", default=[], metavar="IP",
                   help="DNS server for pods with dnsPolicy ClusterFirst (repeatable)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--allow-privileged", action="store_true")
    p.add_argument("--service-proxy", action="store_true",
                   help="program Services into nftables in this network namespace")
    p.add_argument("--cluster-cidr", default="", metavar="CIDR",
                   help="run the pod network (CNI bridge, routes to other nodes, masquerade) "
                   "in this network namespace, for pods of this cluster CIDR")
    p.add_argument("--node-label", action="append", default=[], type=_label, metavar="KEY=VALUE")
    p.add_argument("--tls-cert-file", type=Path)
    p.add_argument("--tls-private-key-file", type=Path)
    p.add_argument("--cluster-ca-cert", type=Path,
                   help="with --cluster-ca-key: issue the endpoint's certificate from the cluster CA")
    p.add_argument("--cluster-ca-key", type=Path)
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    from kubelite.cli.main import run_until_signalled

    if args.kubeconfig is None:
        return await _run_joined(args)
    client = await asyncio.to_thread(load_kubeconfig, args.kubeconfig)
    if args.server:
        client = dataclasses.replace(client, server=args.server)
    config = _config(args, client)

    async def serve(stop: asyncio.Event) -> int:
        return await run_agent(config, stop=stop)

    return await run_until_signalled(serve)


def _config(args: argparse.Namespace, client: ClientConfig) -> AgentConfig:
    return AgentConfig(
        node_name=args.node_name, client=client, root=args.root.absolute(),
        runtime=args.runtime, cgroup_root=args.cgroup_root, lease_interval=args.lease_interval, listen_host=args.address,
        port=args.port, node_ip=args.node_ip, max_pods=args.max_pods,
        allow_privileged=args.allow_privileged, cluster_dns=tuple(args.cluster_dns),
        cluster_domain=args.cluster_domain, tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_private_key_file, ca_cert_file=args.cluster_ca_cert,
        ca_key_file=args.cluster_ca_key, node_labels=tuple(args.node_label),
        service_proxy=args.service_proxy, cluster_cidr=args.cluster_cidr)


async def _run_joined(args: argparse.Namespace) -> int:
    """Join with a token (or reuse the credentials of an earlier join) and run."""
    import sys

    from kubelite.agent import rotation
    from kubelite.agent.join import JoinError, ensure_credentials
    from kubelite.agent.node import detect_ip
    from kubelite.cli.main import run_until_signalled

    if not args.server:
        print("error: --server is required without --kubeconfig", file=sys.stderr)
        return 2
    node_ip = args.node_ip or await asyncio.to_thread(detect_ip)
    root = args.root.absolute()
    try:
        creds = await ensure_credentials(
            server=args.server.rstrip("/"), token=args.token, ca_cert_hash=args.ca_cert_hash,
            node_name=args.node_name, root=root, addresses=(node_ip,))
    except JoinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"node {args.node_name} joined {creds.server}; credentials in {creds.kubeconfig}",
          flush=True)
    args.node_ip = node_ip
    config = _config(args, await asyncio.to_thread(creds.client_config))

    async def serve(stop: asyncio.Event) -> int:
        return await rotation.run(config, stop=stop, creds=creds)

    return await run_until_signalled(serve)
