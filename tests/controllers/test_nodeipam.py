"""Node IPAM against a real API server: every node gets its own /24 of the cluster
CIDR, existing assignments are respected, and freed CIDRs are not reused at once."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, InformerFactory
from kubelite.controllers.nodeipam import CIDRSet, NodeIPAMController, node_cidrs
from tests.controllers.live_api import (
    NODES,
    api_server,
    delete_nodes,
    make_node,
    running,
    until,
)

__all__ = ["api_server"]
EVENTS = lookup("", "v1", "events")


def test_cidr_set_hands_out_node_subnets_round_robin() -> None:
    s = CIDRSet("10.244.0.0/16")
    assert s.size == 256
    assert s.allocate(set()) == "10.244.0.0/24"
    assert s.allocate({0}) == "10.244.1.0/24"
    # Round-robin: a CIDR freed behind the pointer waits its turn.
    assert s.allocate({1}) == "10.244.2.0/24"
    assert s.index("10.244.2.0/24") == 2
    assert s.index("10.244.2.0/25") is None
    assert s.index("10.245.0.0/24") is None
    assert s.index("not a cidr") is None


def test_cidr_set_runs_out_and_rejects_impossible_masks() -> None:
    s = CIDRSet("10.10.0.0/23")
    assert [s.allocate(set(range(i))) for i in range(2)] == ["10.10.0.0/24", "10.10.1.0/24"]
    assert s.allocate({0, 1}) is None
    with pytest.raises(ValueError):
        CIDRSet("10.0.0.0/24", mask=16)


async def wait_cidr(client: Client, name: str) -> str:
    async def assigned() -> str:
        cidrs = node_cidrs(await client.get(NODES, name))
        return cidrs[0] if cidrs else ""
    cidr = await until(assigned)
    node = await client.get(NODES, name)
    assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    return cidr


async def test_each_node_gets_its_own_cidr_and_keeps_a_given_one(api_server) -> None:
    names = ["ipam-a", "ipam-b", "ipam-c", "ipam-given"]
    async with running(api_server, NodeIPAMController) as client:
        try:
            given = await client.create(NODES, {
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": "ipam-given"},
                "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}})
            assert given["spec"]["podCIDR"] == "10.244.0.0/24"
            for name in names[:3]:
                await make_node(client, name)
            cidrs = [await wait_cidr(client, n) for n in names[:3]]
            assert len(set(cidrs)) == 3
            assert "10.244.0.0/24" not in cidrs
            assert all(c.startswith("10.244.") and c.endswith(".0/24") for c in cidrs)
            assert (await client.get(NODES, "ipam-given"))["spec"]["podCIDR"] == "10.244.0.0/24"

            # A deleted node's CIDR is not handed to the next node at once.
            await client.delete(NODES, "ipam-a")
            await make_node(client, "ipam-d")
            names.append("ipam-d")
            fresh = await wait_cidr(client, "ipam-d")
            assert fresh not in cidrs and fresh != "10.244.0.0/24"
        finally:
            await delete_nodes(client, names)


async def test_an_exhausted_range_leaves_a_node_waiting_until_a_cidr_is_freed(
        api_server) -> None:
    names = ["full-a", "full-b", "full-c"]

    def two_cidrs(client: Client, factory: InformerFactory) -> NodeIPAMController:
        return NodeIPAMController(client, factory, cluster_cidr="10.250.0.0/23", node_mask=24)

    async def not_available() -> list[dict]:
        return [e for e in (await client.list(EVENTS, "default"))["items"]
                if e["reason"] == "CIDRNotAvailable"
                and e["involvedObject"]["name"] == "full-c"]

    async with running(api_server, two_cidrs) as client:
        try:
            for name in names[:2]:
                await make_node(client, name)
            first = {name: await wait_cidr(client, name) for name in names[:2]}
            await make_node(client, "full-c")
            await until(not_available)
            # it waits, reported once, instead of retrying on a timer
            await asyncio.sleep(1.0)
            assert node_cidrs(await client.get(NODES, "full-c")) == []
            assert [e["count"] for e in await not_available()] == [1]
            await client.delete(NODES, "full-a")
            assert await wait_cidr(client, "full-c") == first["full-a"]
        finally:
            await delete_nodes(client, names)
