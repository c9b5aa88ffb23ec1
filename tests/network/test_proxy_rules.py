"""Rule generation of the service proxy (no kernel involved)."""

from __future__ import annotations

import pytest

from kubelite.network import proxy_rules as r
from kubelite.network.proxy import service_ports

CIDR = "10.244.0.0/16"
A = r.Endpoint("10.244.1.2", 8080, "n1")
B = r.Endpoint("10.244.2.2", 8080, "n2")


def port(*eps: r.Endpoint, **kw) -> r.ServicePort:
    base = dict(namespace="default", name="web", port_name="http", protocol="TCP",
                cluster_ip="10.96.0.50", port=80, endpoints=eps)
    return r.ServicePort(**{**base, **kw})


def chain_of(rs: r.Ruleset, prefix: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(n, rules) for n, rules in rs.chains.items() if n.startswith(prefix)]


def test_cluster_ip_maps_to_a_service_chain_spreading_over_endpoints() -> None:
    rs = r.build([port(A, B)], node_name="n1", cluster_cidr=CIDR)
    (key, verdict), = rs.maps["service-ips"].items()
    assert key == "10.96.0.50 . tcp . 80"
    (name, rules), = chain_of(rs, "service-")
    assert verdict == f"goto {name}"
    assert rules[0] == ("ip daddr 10.96.0.50 tcp dport 80 ip saddr != 10.244.0.0/16 "
                        "jump mark-for-masquerade")
    assert rules[1].startswith("numgen random mod 2 vmap { 0 : goto endpoint-")
    endpoints = dict(chain_of(rs, "endpoint-"))
    assert sorted(rules[-1] for rules in endpoints.values()) == [
        "meta l4proto tcp dnat to 10.244.1.2:8080", "meta l4proto tcp dnat to 10.244.2.2:8080"]
    assert all(rules[0].endswith("jump mark-for-masquerade") for rules in endpoints.values())


def test_unready_endpoints_are_skipped_and_terminating_ones_only_as_a_last_resort() -> None:
    unready = r.Endpoint("10.244.1.3", 8080, ready=False, serving=False)
    draining = r.Endpoint("10.244.1.4", 8080, ready=False, serving=True, terminating=True)
    assert r.usable_endpoints((A, unready, draining)) == [A]
    assert r.usable_endpoints((unready, draining)) == [draining]
    assert r.usable_endpoints((unready,)) == []


def test_a_port_without_endpoints_is_rejected() -> None:
    rs = r.build([port(node_port=30080)], node_name="n1", cluster_cidr=CIDR)
    assert rs.maps["service-ips"] == {} and rs.maps["service-nodeports"] == {}
    assert rs.maps["no-endpoint-services"] == {"10.96.0.50 . tcp . 80": "goto reject-chain"}
    assert rs.maps["no-endpoint-nodeports"] == {"tcp . 30080": "goto reject-chain"}


def test_node_port_and_load_balancer_ips_go_through_a_masquerading_external_chain() -> None:
    rs = r.build([port(A, node_port=30080, external_ips=("192.0.2.10",))], node_name="n1",
                 cluster_cidr=CIDR)
    (ext, rules), = chain_of(rs, "external-")
    assert rs.maps["service-nodeports"] == {"tcp . 30080": f"goto {ext}"}
    assert rs.maps["service-ips"]["192.0.2.10 . tcp . 80"] == f"goto {ext}"
    assert rules[0] == "jump mark-for-masquerade"
    assert rules[1].startswith("goto service-")


def test_external_traffic_policy_local_uses_local_endpoints_without_masquerade() -> None:
    rs = r.build([port(A, B, node_port=30080, external_local=True)], node_name="n2",
                 cluster_cidr=CIDR)
    (_, rules), = chain_of(rs, "external-")
    assert "mark-for-masquerade" not in " ".join(rules)
    (target,) = [rules[-1].removeprefix("goto ")]
    assert rs.chains[target][-1] == "meta l4proto tcp dnat to 10.244.2.2:8080"


def test_client_ip_affinity_uses_timed_sets_per_endpoint() -> None:
    rs = r.build([port(A, B, affinity_timeout=30)], node_name="n1", cluster_cidr=CIDR)
    assert sorted(rs.sets.values()) == [30, 30]
    (_, rules), = chain_of(rs, "service-")
    assert {x.split(" goto ")[0].removeprefix("ip saddr @") for x in rules[1:3]} == set(rs.sets)
    assert all(" goto endpoint-" in x for x in rules[1:3])
    for _, ep_rules in chain_of(rs, "endpoint-"):
        assert ep_rules[1].startswith("update @affinity-") and ep_rules[1].endswith(
            "{ ip saddr }")


def test_diff_touches_only_what_changed() -> None:
    before = r.build([port(A, B), port(A, name="api", cluster_ip="10.96.0.60")],
                     node_name="n1", cluster_cidr=CIDR)
    after = r.build([port(A), port(A, name="api", cluster_ip="10.96.0.60")],
                    node_name="n1", cluster_cidr=CIDR)
    script = r.diff_script(before, after)
    assert "api" not in script
    assert "delete chain" in script and "10.244.2.2" in script
    assert script.index("flush chain ip kubelite service-") < script.index("delete chain")
    assert r.diff_script(after, after) == ""
    assert r.full_script(after).startswith(
        "add table ip kubelite\ndelete table ip kubelite\nadd table ip kubelite\n")


@pytest.mark.parametrize(("spec", "expected"), [
    ({"type": "ExternalName", "externalName": "x.example"}, 0),
    ({"clusterIP": "None", "ports": [{"port": 80}]}, 0),
    ({"clusterIP": "10.96.0.7", "ports": [{"port": 80, "protocol": "TCP"},
                                          {"port": 53, "protocol": "UDP", "name": "dns"}]}, 2),
], ids=["ExternalName has no rules", "headless has no rules", "one rule set per port"])
def test_which_services_get_rules(spec: dict, expected: int) -> None:
    svc = {"metadata": {"namespace": "default", "name": "s"}, "spec": spec}
    assert len(service_ports(svc, [])) == expected


def test_endpoints_come_from_slices_by_port_name() -> None:
    svc = {"metadata": {"namespace": "default", "name": "s"},
           "spec": {"clusterIP": "10.96.0.7", "type": "LoadBalancer",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30001}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5"}]}}}
    slices = [{"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [{"addresses": ["10.244.1.9"], "nodeName": "n1",
                              "conditions": {"ready": False, "serving": True,
                                             "terminating": True}},
                             {"addresses": ["10.244.1.8"], "conditions": {}}]},
              {"ports": [{"name": "other", "port": 9, "protocol": "TCP"}],
               "endpoints": [{"addresses": ["10.244.1.7"]}]}]
    (sp,) = service_ports(svc, slices)
    assert sp.node_port == 30001 and sp.external_ips == ("192.0.2.5",)
    assert {(e.ip, e.port, e.ready, e.terminating) for e in sp.endpoints} == {
        ("10.244.1.9", 8080, False, True), ("10.244.1.8", 8080, True, False)}
