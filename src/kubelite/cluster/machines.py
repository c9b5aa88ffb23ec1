"""The node machines of a `kubelite up` cluster: a bridge on the host with the
gateway address, and per node a network namespace joined to it by a veth pair,
with the node's address on its eth0 and no route off the machine.

Every step first looks at what exists, so that `up` after a crash reuses a node's
namespace (and with it the network of the pods still running there) instead of
failing or tearing it down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kubelite.cluster.layout import Layout, NodeLayout

NETNS_DIR = Path("/run/netns")


class HostCommandError(RuntimeError):
    pass


async def run(*argv: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise HostCommandError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def link_exists(name: str, *, netns: str = "") -> bool:
    argv = ["ip", *(["-n", netns] if netns else []), "link", "show", name]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def used_networks() -> list[str]:
    """The IPv4 networks of the host's addresses and routes, which a new cluster's
    node subnet must not overlap."""
    out = await run("ip", "-o", "-4", "addr", "show") + await run("ip", "-4", "route", "show")
    found = []
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            found.append(words[words.index("inet") + 1])
        elif words and words[0][0].isdigit():
            found.append(words[0])
    return found


def _forward_rules(layout: Layout) -> list[list[str]]:
    # With br_netfilter, traffic between nodes crosses the host's FORWARD chain,
    # whose policy may be DROP (as Docker leaves it): accept the bridge explicitly.
    return [["FORWARD", "-i", layout.bridge, "-j", "ACCEPT"],
            ["FORWARD", "-o", layout.bridge, "-j", "ACCEPT"]]


async def ensure_bridge(layout: Layout) -> None:
    if not await link_exists(layout.bridge):
        await run("ip", "link", "add", layout.bridge, "type", "bridge")
    addr = f"{layout.gateway}/{layout.prefix_len}"
    if addr not in await run("ip", "-o", "addr", "show", "dev", layout.bridge):
        await run("ip", "addr", "add", addr, "dev", layout.bridge)
    await run("ip", "link", "set", layout.bridge, "up")
    if await _forward_filters():
        for rule in _forward_rules(layout):
            if not await _iptables("-C", *rule):
                await _iptables("-I", *rule)


async def _forward_filters() -> bool:
    """Whether the host's iptables FORWARD chain can drop anything. An accepting,
    empty chain needs no exception; inserting one would create iptables' tables on a
    host that had none, and they would outlive the cluster."""
    listing = await run("iptables", "-w", "-S", "FORWARD", check=False)
    return any(line.startswith("-A") or line == "-P FORWARD DROP"
               for line in listing.splitlines())


async def _iptables(op: str, *rule: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "iptables", "-w", op, *rule, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def ensure_node(layout: Layout, node: NodeLayout) -> None:
    if not (NETNS_DIR / node.netns).exists():
        await run("ip", "netns", "add", node.netns)
    if not await link_exists("eth0", netns=node.netns):
        if await link_exists(node.host_veth):  # half of a pair from an interrupted run
            await run("ip", "link", "del", node.host_veth)
        await run("ip", "link", "add", node.host_veth, "type", "veth", "peer", "name", "eth0",
                  "netns", node.netns)
    await run("ip", "link", "set", node.host_veth, "master", layout.bridge, "up")
    ns = ("ip", "-n", node.netns)
    await run(*ns, "link", "set", "lo", "up")
    addr = f"{node.ip}/{layout.prefix_len}"
    if addr not in await run(*ns, "-o", "addr", "show", "dev", "eth0"):
        await run(*ns, "addr", "add", addr, "dev", "eth0")
    await run(*ns, "link", "set", "eth0", "up")
    # A node has no default route (nothing leaves the machine), so a process in its
    # own namespace, a hostNetwork pod say, needs one for ClusterIPs to get as far as
    # the service proxy's DNAT, as kube-proxy's nodes have through their default route.
    await run(*ns, "route", "replace", layout.service_cidr, "dev", "eth0")


async def set_cut(node: NodeLayout, cut: bool) -> None:
    """Take the node's cable out (or put it back): its veth on the host side."""
    await run("ip", "link", "set", node.host_veth, "down" if cut else "up")


async def remove_network(layout: Layout) -> None:
    for node in layout.nodes:
        if await link_exists(node.host_veth):
            await run("ip", "link", "del", node.host_veth, check=False)
        if (NETNS_DIR / node.netns).exists():
            await run("ip", "netns", "del", node.netns, check=False)
    for rule in _forward_rules(layout):
        while await _iptables("-D", *rule):
            pass
    if await link_exists(layout.bridge):
        await run("ip", "link", "del", layout.bridge, check=False)
