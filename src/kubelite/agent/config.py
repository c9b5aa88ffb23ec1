"""The node agent's configuration, built by `kubelite agent` (cli/agent.py) or by
`kubelite up`, and read by every part of the agent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubelite.client import ClientConfig

KUBELET_VERSION = "v1.32.0-kubelite"
# The kubelet's default port for its HTTPS endpoint (logs, exec, attach, port-forward).
DEFAULT_PORT = 10250


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node_name: str
    client: ClientConfig
    # Everything the agent keeps on the host lives under here: pods/ (volumes,
    # termination messages), logs/, pki/, and the runtime's own state.
    root: Path = Path("/var/lib/kubelite/agent")
    runtime: str = "runc"
    # The cgroup under which every pod gets its own (the runtime's default when empty).
    cgroup_root: str = ""
    # Kubernetes renews the node Lease every 10 s (a quarter of its 40 s duration);
    # kubelite renews every second so that a lost node is noticed within seconds.
    lease_interval: float = 1.0
    # Without a successful Lease renewal for this long the agent kills its pods
    # (agent/fencing.py); the node lifecycle controller waits longer before it
    # deletes them. Kubernetes has no equivalent.
    fencing_timeout: float = 3.0
    # How often node conditions are recomputed; the Node is written only when they
    # change or every `node_status_report` seconds (kubelet: 10 s and 5 min).
    node_status_interval: float = 10.0
    node_status_report: float = 300.0
    # The runtime relist (kubelet's PLEG period) that notices containers exiting.
    relist_interval: float = 1.0
    # Restart back-off of crashing containers: first delay and cap (kubelet: 10 s, 5 min).
    crash_backoff: tuple[float, float] = (10.0, 300.0)
    listen_host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    # The InternalIP reported on the Node; detected from the default route when unset.
    node_ip: str = ""
    max_pods: int = 110
    allow_privileged: bool = False
    # Cluster DNS servers for dnsPolicy ClusterFirst (kubelet's --cluster-dns);
    # without them pods fall back to the host's resolv.conf, as kubelet does.
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    # The serving certificate of the agent's HTTPS endpoint: given files, or issued
    # from the cluster CA when its key is at hand, or else self-signed (as kubelet).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    ca_cert_file: Path | None = None
    ca_key_file: Path | None = None
    node_labels: tuple[tuple[str, str], ...] = ()
    # Program Services into nftables in the agent's network namespace (network/proxy.py):
    # on for agents in a node namespace of their own, off where the host's is shared.
    service_proxy: bool = False
    # The cluster's pod CIDR. When set, the agent runs the pod network in its own
    # network namespace (network/node.py): CNI bridge over the Node's podCIDR, routes
    # to the other nodes, masquerade out of the cluster CIDR. When empty (agents
    # sharing the host's namespace), pods get a loopback-only network namespace.
    cluster_cidr: str = ""

    @property
    def pods_dir(self) -> Path:
        return self.root / "pods"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"
