"""A pod's sandbox configuration: namespaces, hostname, DNS (kubelet's dnsPolicy
rules), and the labels adoption reads back. The cgroup parent is left to the
runtime (one cgroup per pod under its root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubelite.agent import containers
from kubelite.network.podnet import port_mappings
from kubelite.runtime.base import SandboxConfig

Obj = dict[str, Any]
DNS = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # servers, searches, options


def read_resolv_conf(path: Path = Path("/etc/resolv.conf")) -> DNS:
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    try:
        text = path.read_text()
    except OSError:
        return (), (), ()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            options.extend(fields[1:])
    return tuple(servers), tuple(searches), tuple(options)


def dns_config(pod: Obj, *, cluster_dns: tuple[str, ...], cluster_domain: str,
               host: DNS) -> tuple[DNS, bool]:
    """The pod's resolver settings, and whether ClusterFirst had to fall back to
    the host's because no cluster DNS is configured (kubelet's MissingClusterDNS)."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    fell_back = False
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        if cluster_dns:
            ns = pod["metadata"].get("namespace") or "default"
            base: DNS = (cluster_dns,
                         (f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain,
                          *host[1]),
                         ("ndots:5",))
        else:
            fell_back, base = True, host
    elif policy == "None":
        base = ((), (), ())
    else:
        base = host
    extra = spec.get("dnsConfig") or {}
    servers = (*base[0], *(extra.get("nameservers") or []))
    searches = tuple(dict.fromkeys((*base[1], *(extra.get("searches") or []))))
    options = dict(o.split(":", 1) if ":" in o else (o, None) for o in base[2])
    for opt in extra.get("options") or []:
        options[opt.get("name", "")] = opt.get("value")
    rendered = tuple(k if v is None else f"{k}:{v}" for k, v in options.items() if k)
    return (servers[:3], searches[:32], rendered), fell_back


def sandbox_config(pod: Obj, dns: DNS) -> SandboxConfig:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = (spec.get("hostname") or meta["name"])[:63].rstrip("-.")
    return SandboxConfig(
        pod_uid=meta["uid"],
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        hostname=hostname,
        host_network=bool(spec.get("hostNetwork")),
        host_pid=bool(spec.get("hostPID")),
        host_ipc=bool(spec.get("hostIPC")),
        share_process_namespace=bool(spec.get("shareProcessNamespace")),
        dns_servers=dns[0],
        dns_searches=dns[1],
        dns_options=dns[2],
        labels={containers.POD_UID: meta["uid"], containers.POD_NAME: meta["name"],
                containers.POD_NAMESPACE: meta.get("namespace") or "default"},
        port_mappings=() if spec.get("hostNetwork") else port_mappings(pod),
    )
