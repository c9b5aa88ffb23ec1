"""Names and addresses of a `kubelite up` cluster, derived from its data directory."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kubelite.cluster.layout import Layout, choose_subnet, load_layout, make_layout

IFNAMSIZ = 15  # the kernel's limit on a link name, without its NUL


def _layout(data_dir: Path, nodes: int = 3) -> Layout:
    return make_layout(data_dir, nodes=nodes, port=6443, cluster_cidr="10.244.0.0/16",
                       service_cidr="10.96.0.0/16", http_port=80, https_port=443)


def test_every_host_global_name_starts_with_the_cluster_name_and_fits_the_kernel(
        tmp_path: Path) -> None:
    layout = _layout(tmp_path, nodes=9)
    names = [layout.bridge, *(n.host_veth for n in layout.nodes)]
    assert all(n.startswith(layout.name) and len(n) <= IFNAMSIZ for n in names)
    assert all(n.netns.startswith(layout.name) for n in layout.nodes)
    assert all(n.cgroup_root.startswith(f"/kubelite-{layout.name}/") for n in layout.nodes)
    assert len(set(names)) == len(names)


def test_the_same_directory_gives_the_same_names_and_another_gives_others(
        tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, again, b = _layout(tmp_path / "a"), _layout(tmp_path / "a" / ".." / "a"), \
        _layout(tmp_path / "b")
    assert a == again
    assert a.name != b.name and a.bridge != b.bridge


def test_nodes_and_gateway_share_one_subnet(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    subnet = ipaddress.ip_network(layout.subnet)
    assert ipaddress.ip_address(layout.gateway) == subnet[1]
    assert [n.ip for n in layout.nodes] == [str(subnet[11]), str(subnet[12]), str(subnet[13])]
    assert layout.server_url == f"https://{layout.gateway}:6443"
    assert [n.name for n in layout.nodes] == ["node-1", "node-2", "node-3"]
    assert layout.nodes[1].root == str(tmp_path.resolve() / "nodes" / "node-2")


def test_saved_layout_loads_back_with_its_status(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    layout.save(ready=True, supervisor_pid=1234)
    loaded, status = load_layout(tmp_path)
    assert loaded == layout
    assert status == {"ready": True, "supervisor_pid": 1234}
    assert loaded.to_json()["kubeconfig"] == str(tmp_path.resolve() / "kubeconfig")


def test_the_subnet_skips_networks_the_host_already_uses() -> None:
    own = choose_subnet("kl0001")
    assert choose_subnet("kl0001", taken=["192.168.1.0/24", "10.96.0.0/16"]) == own
    base = ipaddress.ip_network(own)
    following = ipaddress.ip_network(f"{base.network_address + 256}/24")
    if following.network_address not in ipaddress.ip_network("10.250.0.0/16"):
        following = ipaddress.ip_network("10.250.0.0/24")
    assert choose_subnet("kl0001", taken=[f"{base[1]}/24"]) == str(following)
    with pytest.raises(RuntimeError, match="in use"):
        choose_subnet("kl0001", taken=["10.0.0.0/8"])


def test_make_layout_takes_the_chosen_subnet(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, nodes=1, port=6443, cluster_cidr="10.244.0.0/16",
                         service_cidr="10.96.0.0/16", http_port=80, https_port=443,
                         subnet="10.250.7.0/24")
    assert (layout.gateway, layout.nodes[0].ip) == ("10.250.7.1", "10.250.7.11")
