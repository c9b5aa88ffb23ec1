"""nftables rules of NetworkPolicy (networking.k8s.io/v1) for the pods of one node.

One table `ip kubelite-policy`, rewritten whole by each sync in one transaction:

    chain forward (hook forward)   established/related accepted; then
                                   saddr vmap {local pod IP: jump egress-POD}
                                   daddr vmap {local pod IP: jump ingress-POD}
    chain egress-POD / ingress-POD one `return` rule per allowed (peer, ports)
                                   pair of every policy selecting the pod, then drop

Only pods that some policy selects for a direction get that direction's
chain; every other pod stays default-allow, as Kubernetes specifies. The
forward hook sees pod traffic to other nodes, and between pods of this node
because br_netfilter passes bridged IPv4 through it (on by default in every
network namespace). Traffic from the node itself (probes) takes the output
hook and is never policed, as with most CNI plugins.

Ports: numbered (with endPort ranges) or named; an ingress rule's named port
is looked up in the selected pod's containers, an egress rule's in each
destination pod's, so it never matches an ipBlock destination, as Kubernetes
says. Peers select pods by podSelector in the policy's namespace, by
namespaceSelector in all namespaces, by both, or addresses by ipBlock (cidr
minus except). Pods without an IPv4 address, host-network pods and finished
pods are neither policed nor peers.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.api.errors import APIError
from kubelite.api.selectors import LabelSelector

Obj = dict[str, Any]
TABLE = "kubelite-policy"
DELETE_SCRIPT = f"table ip {TABLE}\ndelete table ip {TABLE}\n"


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    # (name, protocol, containerPort) of every named container port.
    ports: tuple[tuple[str, str, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_from_object(obj: Obj) -> Pod | None:
    """The policy view of a Pod object; None for pods that take no part."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    ip = next((i for i in ips if i and ":" not in i), None)
    if ip is None:
        return None
    ports = tuple((p["name"], p.get("protocol", "TCP"), int(p["containerPort"]))
                  for c in spec.get("containers") or [] for p in c.get("ports") or []
                  if p.get("name") and p.get("containerPort"))
    return Pod(namespace=meta.get("namespace", ""), name=meta["name"], ip=ip,
               labels=dict(meta.get("labels") or {}), ports=ports)


def chain_name(direction: str, pod: Pod) -> str:
    digest = hashlib.sha256(pod.key.encode()).hexdigest()[:16]
    return f"{direction}-{digest}"


def _selector(obj: Obj | None) -> LabelSelector:
    try:
        return LabelSelector.from_object(obj)
    except APIError:
        # A selector the API server accepted cannot fail here; if one does, it
        # selects nothing rather than everything.
        return LabelSelector.nothing()


def policy_types(policy: Obj) -> set[str]:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if not types:
        types = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    return set(types)


def selects(policy: Obj, pod: Pod) -> bool:
    if policy["metadata"].get("namespace") != pod.namespace:
        return False
    return _selector((policy.get("spec") or {}).get("podSelector") or {}).matches(pod.labels)


class Cluster:
    """The peers a policy can name: every pod and the labels of every namespace."""

    def __init__(self, pods: Iterable[Pod], namespaces: Mapping[str, Mapping[str, str]]) -> None:
        self.pods = sorted(pods, key=lambda p: (p.namespace, p.name))
        self.namespaces = namespaces

    def peer_pods(self, peer: Obj, policy_namespace: str) -> list[Pod]:
        pod_sel = _selector(peer.get("podSelector") or {})
        if "namespaceSelector" in peer and peer["namespaceSelector"] is not None:
            ns_sel = _selector(peer["namespaceSelector"])
            return [p for p in self.pods
                    if ns_sel.matches(self.namespaces.get(p.namespace, {}))
                    and pod_sel.matches(p.labels)]
        return [p for p in self.pods
                if p.namespace == policy_namespace and pod_sel.matches(p.labels)]


def _set(values: Iterable[str]) -> str:
    return "{ " + ", ".join(dict.fromkeys(values)) + " }"


def _port_match(ports: list[Obj], named: Iterable[tuple[str, str, int]]) -> list[str]:
    """nft matches for a rule's ports against one pod's named ports; [""] for any port,
    [] when none of the rule's ports can match."""
    if not ports:
        return [""]
    named = tuple(named)
    by_proto: dict[str, list[str]] = defaultdict(list)
    any_port: list[str] = []
    for port in ports:
        proto = port.get("protocol", "TCP")
        value = port.get("port")
        if value is None:
            any_port.append(proto)
        elif isinstance(value, str) and not value.isdigit():
            by_proto[proto] += [str(num) for name, p, num in named if name == value and p == proto]
        elif port.get("endPort"):
            by_proto[proto].append(f"{int(value)}-{int(port['endPort'])}")
        else:
            by_proto[proto].append(str(int(value)))
    out = [f"meta l4proto {proto.lower()}" for proto in dict.fromkeys(any_port)]
    out += [f"meta l4proto {proto.lower()} th dport {_set(nums)}"
            for proto, nums in by_proto.items() if nums and proto not in any_port]
    return out


def _has_named(ports: list[Obj]) -> bool:
    return any(isinstance(p.get("port"), str) and not p["port"].isdigit() for p in ports)


def _ip_block(block: Obj, field: str) -> str:
    match = f"ip {field} {block['cidr']}"
    if block.get("except"):
        match += f" ip {field} != {_set(block['except'])}"
    return match


def _ingress_rules(policy: Obj, pod: Pod, cluster: Cluster) -> list[str]:
    namespace = policy["metadata"]["namespace"]
    rules: list[str] = []
    for rule in (policy.get("spec") or {}).get("ingress") or []:
        ports = _port_match(rule.get("ports") or [], pod.ports)
        sources: list[str] = []
        peers = rule.get("from") or []
        if not peers:
            sources = [""]
        for peer in peers:
            if peer.get("ipBlock"):
                sources.append(_ip_block(peer["ipBlock"], "saddr"))
            elif ips := [p.ip for p in cluster.peer_pods(peer, namespace)]:
                sources.append(f"ip saddr {_set(ips)}")
        rules += [" ".join(filter(None, (src, port, "return")))
                  for src in sources for port in ports]
    return rules


def _egress_rules(policy: Obj, cluster: Cluster) -> list[str]:
    namespace = policy["metadata"]["namespace"]
    rules: list[str] = []
    for rule in (policy.get("spec") or {}).get("egress") or []:
        ports = rule.get("ports") or []
        peers = rule.get("to") or []
        if not _has_named(ports):
            matches = _port_match(ports, ())
            dests = [""] if not peers else []
            for peer in peers:
                if peer.get("ipBlock"):
                    dests.append(_ip_block(peer["ipBlock"], "daddr"))
                elif ips := [p.ip for p in cluster.peer_pods(peer, namespace)]:
                    dests.append(f"ip daddr {_set(ips)}")
            rules += [" ".join(filter(None, (dst, port, "return")))
                      for dst in dests for port in matches]
            continue
        # Named ports mean something per destination pod: group pods by what they resolve to.
        targets = cluster.pods if not peers else [
            p for peer in peers if not peer.get("ipBlock")
            for p in cluster.peer_pods(peer, namespace)]
        grouped: dict[str, list[str]] = defaultdict(list)
        for target in targets:
            for port in _port_match(ports, target.ports):
                grouped[port].append(target.ip)
        rules += [" ".join(filter(None, (f"ip daddr {_set(ips)}", port, "return")))
                  for port, ips in grouped.items()]
    return rules


def build(local_pods: Iterable[Pod], policies: Iterable[Obj], cluster: Cluster) -> str:
    """The whole table as one `nft -f -` script (create, flush by delete, fill)."""
    policies = sorted(policies, key=lambda p: (p["metadata"].get("namespace", ""),
                                               p["metadata"]["name"]))
    chains: dict[str, list[str]] = {}
    ingress_map: list[str] = []
    egress_map: list[str] = []
    for pod in sorted(local_pods, key=lambda p: p.ip):
        mine = [p for p in policies if selects(p, pod)]
        for direction, entries in (("Ingress", ingress_map), ("Egress", egress_map)):
            applying = [p for p in mine if direction in policy_types(p)]
            if not applying:
                continue
            name = chain_name(direction.lower(), pod)
            rules = [f'comment "{pod.key} {direction.lower()}"']
            for policy in applying:
                rules += (_ingress_rules(policy, pod, cluster) if direction == "Ingress"
                          else _egress_rules(policy, cluster))
            chains[name] = [*dict.fromkeys(rules), "drop"]
            entries.append(f"{pod.ip} : jump {name}")
    forward = ["ct state established,related accept"]
    if egress_map:
        forward.append(f"ip saddr vmap {_set(egress_map)}")
    if ingress_map:
        forward.append(f"ip daddr vmap {_set(ingress_map)}")
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{",
             "  chain forward {",
             "    type filter hook forward priority filter; policy accept;",
             *(f"    {r}" for r in forward), "  }"]
    for name, rules in chains.items():
        lines += [f"  chain {name} {{", *(f"    {r}" for r in rules), "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"
