"""NetworkPolicy -> nftables rule generation, table-driven."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kubelite.network import policy_rules as rules
from kubelite.network.policy_rules import Cluster, Pod


def make_pod(name: str, ip: str, *, ns: str = "default", ports=(), **labels: str) -> Pod:
    return Pod(namespace=ns, name=name, ip=ip, labels=labels, ports=tuple(ports))


def make_policy(*, ns: str = "default", selector: dict | None = None,
                ingress: list | None = None, egress: list | None = None,
                types: list[str] | None = None) -> dict:
    spec: dict = {"podSelector": selector if selector is not None else {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"metadata": {"name": "p", "namespace": ns}, "spec": spec}


SERVER = make_pod("server", "10.244.1.10", app="web",
                  ports=[("http", "TCP", 8080), ("metrics", "TCP", 9090)])
CLIENT = make_pod("client", "10.244.1.11", role="client")
OTHER = make_pod("other", "10.244.2.12", role="other")
PROD_DB = make_pod("db", "10.244.2.20", ns="prod", ports=[("pg", "TCP", 5432)], app="db")
NAMESPACES = {"default": {"kubernetes.io/metadata.name": "default"},
              "prod": {"kubernetes.io/metadata.name": "prod", "env": "prod"}}
CLUSTER = Cluster([SERVER, CLIENT, OTHER, PROD_DB], NAMESPACES)


@dataclass
class Case:
    name: str
    policies: list[dict]
    # Rules of the server's ingress / egress chain (None: no chain, default allow).
    ingress: list[str] | None = None
    egress: list[str] | None = None
    local: list[Pod] = field(default_factory=lambda: [SERVER])


CASES = [
    Case("no policy leaves the pod default-allow", []),
    Case("a policy selecting other pods leaves the pod alone",
         [make_policy(selector={"matchLabels": {"app": "db"}}, ingress=[])]),
    Case("a policy in another namespace does not apply",
         [make_policy(ns="prod", ingress=[])]),
    Case("default deny ingress: empty ingress list drops everything",
         [make_policy(types=["Ingress"])], ingress=["drop"]),
    Case("allow from pods by label in the policy's namespace",
         [make_policy(ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}])],
         ingress=["ip saddr { 10.244.1.11 } return", "drop"]),
    Case("an empty rule allows from everywhere on every port",
         [make_policy(ingress=[{}])], ingress=["return", "drop"]),
    Case("matchExpressions select pods",
         [make_policy(ingress=[{"from": [{"podSelector": {"matchExpressions": [
             {"key": "role", "operator": "In", "values": ["client", "other"]}]}}]}])],
         ingress=["ip saddr { 10.244.1.11, 10.244.2.12 } return", "drop"]),
    Case("a selector matching no pod allows nothing",
         [make_policy(ingress=[{"from": [{"podSelector": {"matchLabels": {"x": "y"}}}]}])],
         ingress=["drop"]),
    Case("namespaceSelector alone selects every pod of matching namespaces",
         [make_policy(ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}])],
         ingress=["ip saddr { 10.244.2.20 } return", "drop"]),
    Case("namespaceSelector and podSelector in one peer are ANDed",
         [make_policy(ingress=[{"from": [{"namespaceSelector": {},
                                          "podSelector": {"matchLabels": {"app": "db"}}}]}])],
         ingress=["ip saddr { 10.244.2.20 } return", "drop"]),
    Case("ipBlock with except",
         [make_policy(ingress=[{"from": [{"ipBlock": {"cidr": "172.16.0.0/12",
                                                      "except": ["172.16.1.0/24"]}}]}])],
         ingress=["ip saddr 172.16.0.0/12 ip saddr != { 172.16.1.0/24 } return", "drop"]),
    Case("numbered ports, endPort ranges and protocols",
         [make_policy(ingress=[{"ports": [{"port": 80}, {"port": 8000, "endPort": 8100},
                                          {"protocol": "UDP", "port": 53}]}])],
         ingress=["meta l4proto tcp th dport { 80, 8000-8100 } return",
                  "meta l4proto udp th dport { 53 } return", "drop"]),
    Case("a protocol without a port allows every port of it",
         [make_policy(ingress=[{"ports": [{"protocol": "UDP"}, {"protocol": "UDP", "port": 5}]}])],
         ingress=["meta l4proto udp return", "drop"]),
    Case("named ingress ports resolve against the selected pod",
         [make_policy(ingress=[{"from": [{"podSelector": {}}],
                                "ports": [{"port": "http"}, {"port": "nope"}]}])],
         ingress=["ip saddr { 10.244.1.11, 10.244.2.12, 10.244.1.10 } meta l4proto tcp "
                  "th dport { 8080 } return", "drop"]),
    Case("a named port the pod lacks allows nothing",
         [make_policy(ingress=[{"ports": [{"port": "nope"}]}])], ingress=["drop"]),
    Case("rules of several policies add up",
         [make_policy(ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]),
          make_policy(ingress=[{"ports": [{"port": 9090}]}])],
         ingress=["ip saddr { 10.244.1.11 } return",
                  "meta l4proto tcp th dport { 9090 } return", "drop"]),
    Case("default deny egress does not touch ingress",
         [make_policy(types=["Egress"])], egress=["drop"]),
    Case("policyTypes unset with egress rules means both directions",
         [make_policy(egress=[{"to": [{"ipBlock": {"cidr": "10.96.0.0/16"}}],
                               "ports": [{"protocol": "UDP", "port": 53}]}])],
         ingress=["drop"],
         egress=["ip daddr 10.96.0.0/16 meta l4proto udp th dport { 53 } return", "drop"]),
    Case("named egress ports resolve against each destination pod",
         [make_policy(types=["Egress"], egress=[{"ports": [{"port": "pg"}, {"port": "http"}]}])],
         egress=["ip daddr { 10.244.1.10 } meta l4proto tcp th dport { 8080 } return",
                 "ip daddr { 10.244.2.20 } meta l4proto tcp th dport { 5432 } return", "drop"]),
    Case("named egress ports never match an ipBlock",
         [make_policy(types=["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                                 "ports": [{"port": "pg"}]}])],
         egress=["drop"]),
]


def chain_rules(script: str, chain: str) -> list[str] | None:
    lines = script.splitlines()
    try:
        start = lines.index(f"  chain {chain} {{")
    except ValueError:
        return None
    body = lines[start + 1:lines.index("  }", start)]
    return [line.strip() for line in body if not line.strip().startswith("comment ")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rules(case: Case) -> None:
    script = rules.build(case.local, case.policies, CLUSTER)
    assert chain_rules(script, rules.chain_name("ingress", SERVER)) == case.ingress
    assert chain_rules(script, rules.chain_name("egress", SERVER)) == case.egress
    forward = chain_rules(script, "forward")
    assert forward is not None and forward[1] == "ct state established,related accept"
    jumps = [r for r in forward if "vmap" in r]
    assert bool(case.ingress) == any(r.startswith("ip daddr vmap") for r in jumps)
    assert bool(case.egress) == any(r.startswith("ip saddr vmap") for r in jumps)


def test_script_replaces_the_table_in_one_transaction() -> None:
    script = rules.build([SERVER, CLIENT], [make_policy(types=["Ingress"])], CLUSTER)
    assert script.startswith("table ip kubelite-policy\ndelete table ip kubelite-policy\n")
    assert (f"ip daddr vmap {{ 10.244.1.10 : jump {rules.chain_name('ingress', SERVER)}, "
            f"10.244.1.11 : jump {rules.chain_name('ingress', CLIENT)} }}") in script
    assert 'comment "default/server ingress"' in script


@pytest.mark.parametrize("obj, expected", [
    ({"metadata": {"name": "a", "namespace": "n", "labels": {"x": "1"}},
      "spec": {"containers": [{"ports": [{"name": "web", "containerPort": 80},
                                         {"containerPort": 81}]}]},
      "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]}},
     Pod("n", "a", "10.244.0.5", {"x": "1"}, (("web", "TCP", 80),))),
    ({"metadata": {"name": "a", "namespace": "n"}, "spec": {"hostNetwork": True},
      "status": {"podIP": "192.168.0.1"}}, None),
    ({"metadata": {"name": "a", "namespace": "n"}, "spec": {},
      "status": {"phase": "Succeeded", "podIP": "10.244.0.5"}}, None),
    ({"metadata": {"name": "a", "namespace": "n"}, "spec": {}, "status": {}}, None),
], ids=["running pod with a named port", "host network", "finished", "no address yet"])
def test_pod_from_object(obj: dict, expected: Pod | None) -> None:
    assert rules.pod_from_object(obj) == expected
