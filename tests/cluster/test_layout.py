"""Names and addresses of a `kubelite up` cluster, derived from its data directory."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from kubelite.cluster.layout import Layout, load_layout, make_layout

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
