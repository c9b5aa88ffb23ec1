"""The Node's numbers and conditions, the Lease heartbeat, pod DNS settings."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from kubelite.agent.lease import LeaseHeartbeat
from kubelite.agent.node import Facts, allocatable, capacity, conditions
from kubelite.agent.sandbox import dns_config
from kubelite.client import Conflict, NotFound
from tests.agent.fakes import make_pod

GiB = 1024**3
FACTS = Facts(cpus=2, memory=4 * GiB, memory_available=2 * GiB, storage=100 * GiB,
              storage_available=50 * GiB, pid_max=100_000, pids=500, hostname="h",
              kernel="6.1.0", os_image="Debian", machine_id="m", boot_id="b", system_uuid="u")


def test_capacity_and_allocatable() -> None:
    assert capacity(FACTS, 110) == {"cpu": "2", "memory": "4194304Ki",
                                    "ephemeral-storage": "104857600Ki", "pods": "110",
                                    "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    alloc = allocatable(FACTS, 110)
    assert alloc["memory"] == "4091904Ki"  # minus the 100Mi eviction threshold
    assert alloc["ephemeral-storage"] == str(90 * GiB)


@pytest.mark.parametrize(("facts", "kind", "reason"), [
    (FACTS, "MemoryPressure", "KubeletHasSufficientMemory"),
    (replace(FACTS, memory_available=50 * 1024**2), "MemoryPressure",
     "KubeletHasInsufficientMemory"),
    (replace(FACTS, storage_available=5 * GiB), "DiskPressure", "KubeletHasDiskPressure"),
    (replace(FACTS, pids=95_000), "PIDPressure", "KubeletHasInsufficientPID"),
], ids=["fine", "memory", "disk", "pids"])
def test_pressure_conditions(facts: Facts, kind: str, reason: str) -> None:
    conds = {c["type"]: c for c in conditions(facts, [])}
    assert conds[kind]["reason"] == reason
    assert conds[kind]["status"] == ("False" if reason.startswith(("KubeletHasSuff",
                                                                   "KubeletHasNo")) else "True")
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"


def test_condition_transition_time_kept() -> None:
    first = conditions(FACTS, [])
    for c in first:
        c["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = conditions(FACTS, first)
    assert all(c["lastTransitionTime"] == "2020-01-01T00:00:00Z" for c in again)


class LeaseClient:
    def __init__(self) -> None:
        self.stored: dict[str, Any] | None = None
        self.rv = 0
        self.writes = 0

    def _save(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.stored = obj
        return copy.deepcopy(obj)

    async def get(self, res: Any, name: str, namespace: str) -> dict[str, Any]:
        if self.stored is None:
            raise NotFound({"code": 404})
        return copy.deepcopy(self.stored)

    async def create(self, res: Any, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        return self._save(obj)

    async def update(self, res: Any, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        assert self.stored is not None
        if obj["metadata"].get("resourceVersion") != self.stored["metadata"]["resourceVersion"]:
            raise Conflict({"code": 409})
        self.writes += 1
        return self._save(obj)


async def test_lease_created_renewed_and_recovers_from_conflict() -> None:
    client = LeaseClient()
    hb = LeaseHeartbeat(client, "node-1", interval=1.0, node_uid="uid-n")
    lease = await hb.renew()
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["spec"]["holderIdentity"] == "node-1"
    assert lease["spec"]["leaseDurationSeconds"] == 4
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-n"
    assert lease["spec"]["renewTime"].endswith("Z") and "." in lease["spec"]["renewTime"]
    await hb.renew()
    assert client.writes == 1
    client.rv += 5
    assert client.stored is not None
    client.stored["metadata"]["resourceVersion"] = str(client.rv)  # someone else wrote
    await hb.renew()
    assert client.writes == 2


@pytest.mark.parametrize(("spec", "cluster_dns", "want", "fell_back"), [
    ({}, ("10.96.0.10",), (("10.96.0.10",), ("default.svc.cluster.local", "svc.cluster.local",
                                              "cluster.local", "lan"), ("ndots:5",)), False),
    ({}, (), (("192.168.1.1",), ("lan",), ("edns0",)), True),
    ({"hostNetwork": True}, ("10.96.0.10",), (("192.168.1.1",), ("lan",), ("edns0",)), False),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["x"],
                                         "options": [{"name": "ndots", "value": "2"}]}},
     (), (("1.1.1.1",), ("x",), ("ndots:2",)), False),
], ids=["cluster-first", "no-cluster-dns", "host-network", "none-with-config"])
def test_dns_policy(spec: dict, cluster_dns: tuple[str, ...], want: tuple, fell_back: bool
                    ) -> None:
    pod = make_pod("p", **spec)
    host = (("192.168.1.1",), ("lan",), ("edns0",))
    assert dns_config(pod, cluster_dns=cluster_dns, cluster_domain="cluster.local",
                      host=host) == (want, fell_back)
