"""Every name and address a `kubelite up` cluster owns on the host, derived from its
data directory, so that clusters side by side never collide and `down` finds
everything again after a crash."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Node machines live in 10.250.0.0/16, one /24 per cluster chosen from the data
# directory's hash (the next free one if the host uses it already) and kept in
# cluster.json; nodes are .11, .12, ... and the host (the gateway) is .1.
NODE_NETWORK = ipaddress.ip_network("10.250.0.0/16")
FIRST_NODE_HOST = 11


@dataclass(frozen=True)
class NodeLayout:
    name: str
    netns: str
    ip: str
    host_veth: str
    root: str
    cgroup_root: str


@dataclass(frozen=True)
class Layout:
    data_dir: Path
    name: str
    subnet: str
    port: int
    nodes: tuple[NodeLayout, ...]
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    http_port: int = 80
    https_port: int = 443
    registry: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.subnet)[1])

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def server_url(self) -> str:
        return f"https://{self.gateway}:{self.port}"

    @property
    def server_dir(self) -> Path:
        return self.data_dir / "server"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "cluster.json"

    @property
    def control_socket(self) -> Path:
        return self.data_dir / "control.sock"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "up.log"

    def node(self, name: str) -> NodeLayout:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["data_dir"] = str(self.data_dir)
        doc.update(bridge=self.bridge, gateway=self.gateway, server=self.server_url,
                   kubeconfig=str(self.kubeconfig))
        return doc

    def save(self, *, node_pids: dict[str, int] | None = None, **status: Any) -> None:
        """cluster.json: the layout, each node with the pid of its agent when given,
        and the status fields (ready, supervisor_pid, ...)."""
        doc = {**self.to_json(), **status}
        for node in doc["nodes"]:
            if node_pids and node_pids.get(node["name"]):
                node["pid"] = node_pids[node["name"]]
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.state_file)


def cluster_name(data_dir: Path) -> str:
    return "kl" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:4]


def choose_subnet(name: str, *, taken: Collection[str] = ()) -> str:
    """The /24 for the cluster's nodes: the one its name hashes to, or the next one
    that no address or route of the host uses yet (another cluster's)."""
    start = int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 256
    used = [ipaddress.ip_network(t, strict=False) for t in taken]
    for k in range(256):
        subnet = ipaddress.ip_network(
            f"{NODE_NETWORK.network_address + (start + k) % 256 * 256}/24")
        if not any(subnet.overlaps(u) for u in used):
            return str(subnet)
    raise RuntimeError(f"every /24 of {NODE_NETWORK} is in use on this host")


def make_layout(data_dir: Path, *, nodes: int, port: int, cluster_cidr: str,
                service_cidr: str, http_port: int, https_port: int,
                registry: str = "", subnet: str = "") -> Layout:
    """`subnet` as `choose_subnet` gave it (default: the name's own /24)."""
    data_dir = data_dir.resolve()
    name = cluster_name(data_dir)
    subnet = ipaddress.ip_network(subnet or choose_subnet(name))
    made = []
    for k in range(1, nodes + 1):
        node = f"node-{k}"
        made.append(NodeLayout(
            name=node, netns=f"{name}-{node}", ip=str(subnet[FIRST_NODE_HOST + k - 1]),
            host_veth=f"{name}n{k}", root=str(data_dir / "nodes" / node),
            cgroup_root=f"/kubelite-{name}/{node}"))
    return Layout(data_dir=data_dir, name=name, subnet=str(subnet), port=port,
                  nodes=tuple(made), cluster_cidr=cluster_cidr, service_cidr=service_cidr,
                  http_port=http_port, https_port=https_port, registry=registry)


def load_layout(data_dir: Path) -> tuple[Layout, dict[str, Any]]:
    """The layout `up` saved, and the status fields beside it (pids, ready)."""
    doc = json.loads((data_dir / "cluster.json").read_text())
    fields = NodeLayout.__dataclass_fields__
    nodes = tuple(NodeLayout(**{k: v for k, v in n.items() if k in fields}) for n in doc["nodes"])
    known = {f for f in Layout.__dataclass_fields__ if f not in ("nodes", "data_dir")}
    layout = Layout(data_dir=Path(doc["data_dir"]), nodes=nodes,
                    **{k: v for k, v in doc.items() if k in known})
    status = {k: v for k, v in doc.items() if k not in known and k not in (
        "nodes", "data_dir", "bridge", "gateway", "server", "kubeconfig")}
    return layout, status
