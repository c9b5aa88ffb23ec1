"""The scheduling queue's sub-queues and the KubeSchedulerConfiguration profiles."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.scheduler.config import ConfigError, parse_config
from kubelite.scheduler.queue import SchedulingQueue
from tests.scheduler.builders import Cluster, make_node, make_pod

CONFIG = "kubescheduler.config.k8s.io/v1"


async def test_pods_are_taken_by_priority_then_age() -> None:
    queue = SchedulingQueue()
    queue.add(make_pod("old-low"), priority=0)
    queue.add(make_pod("high"), priority=100)
    queue.add(make_pod("new-low"), priority=0)
    order = [(await queue.pop()).pod["metadata"]["name"] for _ in range(3)]
    assert order == ["high", "old-low", "new-low"]


async def test_unschedulable_pods_move_only_on_events_their_rejectors_care_about() -> None:
    queue = SchedulingQueue(initial_backoff=0.0)
    queue.add(make_pod("p"), priority=0)
    queued = await queue.pop()
    queue.unschedulable(queued, frozenset({"NodeResourcesFit"}))
    assert queue.counts()["unschedulable"] == 1
    assert queue.move("PodAdd") == 0
    assert queue.move("PodDelete") == 1
    assert (await asyncio.wait_for(queue.pop(), 1)).key == "default/p"


async def test_an_event_during_the_cycle_is_not_lost() -> None:
    queue = SchedulingQueue(initial_backoff=0.01)
    queue.add(make_pod("p"), priority=0)
    queued = await queue.pop()
    queue.move("NodeAdd")  # while the pod's cycle runs
    queue.unschedulable(queued, frozenset({"NodeAffinity"}))
    assert queue.counts()["unschedulable"] == 0
    assert (await asyncio.wait_for(queue.pop(), 1)).key == "default/p"


async def test_failed_pods_back_off_exponentially() -> None:
    queue = SchedulingQueue(initial_backoff=0.05, max_backoff=0.1)
    queue.add(make_pod("p"), priority=0)
    queued = await queue.pop()
    queue.backoff(queued)
    assert queue.counts()["backoff"] == 1
    loop = asyncio.get_running_loop()
    start = loop.time()
    queued = await asyncio.wait_for(queue.pop(), 1)
    assert loop.time() - start >= 0.04
    assert queued.attempts == 2


def test_profiles_plugins_weights_and_args() -> None:
    config = parse_config({
        "apiVersion": CONFIG, "kind": "KubeSchedulerConfiguration",
        "percentageOfNodesToScore": 30,
        "profiles": [
            {"schedulerName": "default-scheduler"},
            {"schedulerName": "packer",
             "plugins": {"score": {"disabled": [{"name": "NodeResourcesBalancedAllocation"}],
                                   "enabled": [{"name": "NodeResourcesFit", "weight": 5}]},
                         "multiPoint": {"disabled": [{"name": "ImageLocality"}]}},
             "pluginConfig": [{"name": "NodeResourcesFit", "args": {
                 "scoringStrategy": {"type": "MostAllocated"}}}]}]})
    assert config.percentage_of_nodes_to_score == 30
    packer = config.profiles[1]
    assert dict(packer.plugins)["NodeResourcesFit"] == 5
    assert "ImageLocality" not in dict(packer.plugins)
    cluster = Cluster([make_node("a")])
    fw = cluster.framework(packer, config)
    assert [p.name for p, _, _ in fw.scorers] == ["TaintToleration", "NodeAffinity",
                                                  "NodeResourcesFit", "PodTopologySpread",
                                                  "InterPodAffinity"]
    assert fw.plugin("NodeResourcesFit").strategy.type == "MostAllocated"
    assert fw.percentage == 30


@pytest.mark.parametrize("raw", [
    {"apiVersion": "v1", "kind": "KubeSchedulerConfiguration"},
    {"apiVersion": CONFIG, "kind": "KubeSchedulerConfiguration",
     "profiles": [{"plugins": {"filter": {"enabled": [{"name": "NoSuchPlugin"}]}}}]},
    {"apiVersion": CONFIG, "kind": "KubeSchedulerConfiguration",
     "profiles": [{"schedulerName": "x"}, {"schedulerName": "x"}]},
], ids=["wrong apiVersion", "unknown plugin", "duplicate profile"])
def test_bad_configs_are_refused(raw: dict) -> None:
    with pytest.raises(ConfigError):
        parse_config(raw)


async def test_a_status_update_of_an_unschedulable_pod_does_not_retry_it() -> None:
    queue = SchedulingQueue(initial_backoff=0.0)
    pod = make_pod("p")
    queue.add(pod, priority=0)
    queue.unschedulable(await queue.pop(), frozenset({"NodeAffinity"}))
    queue.add({**pod, "status": {"conditions": [{"type": "PodScheduled"}]}}, priority=0)
    assert queue.counts()["unschedulable"] == 1
    queue.add({**pod, "spec": {**pod["spec"], "nodeSelector": {"a": "b"}}}, priority=0)
    assert queue.counts()["unschedulable"] == 0
