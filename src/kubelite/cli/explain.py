"""`kubelite explain-placement POD`: why a pod landed where it did, or why it is Pending."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from kubelite.api.registry import lookup
from kubelite.client import Client, NotFound, load_kubeconfig
from kubelite.scheduler.config import SchedulerConfiguration, load_config
from kubelite.scheduler.explain import Snapshot, explain, format_placement
from kubelite.scheduler.scheduler import WATCHED


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "explain-placement", help="show per node which filters passed, the scores, the choice",
        description="Run the scheduler's filters and scores for one pod against the current "
        "cluster, without binding anything, and print per node the filter that failed (and "
        "why) or the score of each plugin and the total, then the node chosen.")
    p.add_argument("pod")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--config", type=Path, help="the scheduler's KubeSchedulerConfiguration")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    client_config = await asyncio.to_thread(load_kubeconfig, args.kubeconfig)
    config = (await asyncio.to_thread(load_config, args.config) if args.config
              else SchedulerConfiguration())
    pods_res, nodes_res = lookup("", "v1", "pods"), lookup("", "v1", "nodes")
    assert pods_res is not None and nodes_res is not None
    async with Client(client_config, user_agent="kubelite-explain") as client:
        try:
            pod = await client.get(pods_res, args.pod, args.namespace)
        except NotFound:
            print(f'Error: pod "{args.pod}" not found in namespace {args.namespace}',
                  file=sys.stderr)
            return 1
        nodes, pods = await asyncio.gather(client.list_all(nodes_res),
                                           client.list_all(pods_res))
        others = {}
        for plural, (group, version) in WATCHED.items():
            res = lookup(group, version, plural)
            assert res is not None
            others[plural] = (await client.list_all(res)).get("items") or []
    snapshot = Snapshot(nodes["items"], pods["items"], others)
    placement = explain(pod, snapshot, config=config)
    name = (pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
    profile = next(p for p in config.profiles if p.scheduler_name == name)
    print(format_placement(placement, weights=dict(profile.plugins),
                           bound_to=(pod.get("spec") or {}).get("nodeName")))
    return 0
