"""The node's own nftables table `kubelite-net` (beside the service proxy's `kubelite`):
pods' traffic is forwarded, and masqueraded to the node's address when it
leaves the cluster CIDR (pod to pod stays unNATed, as Kubernetes requires).

An accept here cannot overrule a drop in another table's chain at the same hook,
so this is for nodes that own their network namespace; the forward chain makes
the intent explicit where the namespace's default policy is later tightened.
"""

from __future__ import annotations

import asyncio
import ipaddress

TABLE = "kubelite-net"


def ruleset(cluster_cidr: str) -> str:
    """The whole table, replaced in one nft transaction."""
    cidr = str(ipaddress.ip_network(cluster_cidr, strict=False))
    return (
        f"table ip {TABLE}\n"
        f"delete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        f"  chain forward {{\n"
        f"    type filter hook forward priority filter; policy accept;\n"
        f"    ip saddr {cidr} accept\n"
        f"    ip daddr {cidr} accept\n"
        f"  }}\n"
        f"  chain postrouting {{\n"
        f"    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {cidr} ip daddr != {cidr} masquerade\n"
        f"  }}\n"
        f"}}\n")


async def _run(argv: list[str], *, netns: str | None, stdin: str | None = None) -> None:
    prefix = ["nsenter", f"--net=/var/run/netns/{netns}"] if netns else []
    proc = await asyncio.create_subprocess_exec(
        *prefix, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0:
        raise OSError(f"{argv[0]}: {err.decode(errors='replace').strip()}")


async def install(cluster_cidr: str, *, netns: str | None = None) -> None:
    """Route for pods (IPv4 forwarding on) and install the table."""
    await _run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=netns)
    await _run(["nft", "-f", "-"], netns=netns, stdin=ruleset(cluster_cidr))


async def remove(*, netns: str | None = None) -> None:
    """Delete the table (if there is one)."""
    await _run(["nft", "-f", "-"], netns=netns,
               stdin=f"table ip {TABLE}\ndelete table ip {TABLE}\n")
