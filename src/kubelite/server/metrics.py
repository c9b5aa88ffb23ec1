"""metrics.k8s.io/v1beta1: NodeMetrics and PodMetrics for `kubectl top` and the
HorizontalPodAutoscaler, read on demand from the agents' Summary API.

Kubernetes serves this group from metrics-server, an aggregated API that scrapes
every kubelet each 15 s and keeps the result in memory. kubelite answers it in the
API server itself, asking the agents of the Ready nodes concurrently at request
time: the agents already keep the last two samples that a rate needs, so nothing
is cached twice and no extra process runs. An agent that does not answer within
`SCRAPE_TIMEOUT` is left out of the answer, as metrics-server leaves out a node it
could not scrape.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp
from aiohttp import web

from kubelite.api import errors
from kubelite.api.registry import lookup
from kubelite.server import codec
from kubelite.server.context import Target, ctx
from kubelite.server.reads import selectors
from kubelite.server.streaming import agent_base, node_access

Obj = dict[str, Any]
GROUP_VERSION = "metrics.k8s.io/v1beta1"
SCRAPE_TIMEOUT = 3.0
# The agents sample every 5 s; a rate is over the time between two samples.
WINDOW = "5s"
_NODES = lookup("", "v1", "nodes")
_PODS = lookup("", "v1", "pods")


def _ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _usage(stats: Obj) -> Obj | None:
    """{"cpu", "memory"} as metrics-server writes them (nanocores, KiB), or None while
    the agent has only one sample (no rate yet)."""
    cpu, memory = stats.get("cpu") or {}, stats.get("memory") or {}
    if "usageNanoCores" not in cpu or "workingSetBytes" not in memory:
        return None
    return {"cpu": f"{cpu['usageNanoCores']}n", "memory": f"{memory['workingSetBytes'] // 1024}Ki"}


async def _summary(session: aiohttp.ClientSession, ssl_context: Any, node: Obj) -> Obj | None:
    try:
        async with session.get(f"{agent_base(node)}/stats/summary", ssl=ssl_context,
                               timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as resp:
            if resp.status != 200:
                return None
            return await resp.json()
    except (aiohttp.ClientError, TimeoutError, errors.APIError, ValueError):
        return None


async def _summaries(request: web.Request, nodes: list[Obj]) -> list[Obj]:
    access = node_access(request)
    session, ssl_context = access.session(), access.ssl_context()
    found = await asyncio.gather(*(_summary(session, ssl_context, n) for n in nodes
                                   if _ready(n)))
    return [s for s in found if s]


def _meta(obj: Obj) -> Obj:
    meta = obj["metadata"]
    out = {"name": meta["name"], "creationTimestamp": dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    if meta.get("labels"):
        out["labels"] = meta["labels"]
    return out


async def node_metrics(request: web.Request, t: Target) -> list[Obj]:
    objects = ctx(request).objects
    if t.name is not None:
        nodes = [n for n in [await objects.get_or_none(_NODES, None, t.name)] if n]
    else:
        nodes, _, _ = await objects.list(_NODES, None, keep=selectors(request, _NODES))
    by_name = {n["metadata"]["name"]: n for n in nodes}
    items = []
    for summary in await _summaries(request, nodes):
        stats = summary.get("node") or {}
        node = by_name.get(stats.get("nodeName", ""))
        if node is not None and (usage := _usage(stats)):
            items.append({"metadata": _meta(node), "timestamp": stats["cpu"]["time"],
                          "window": WINDOW, "usage": usage})
    return items


async def pod_metrics(request: web.Request, t: Target) -> list[Obj]:
    objects = ctx(request).objects
    if t.name is not None:
        pods = [p for p in [await objects.get_or_none(_PODS, t.namespace, t.name)] if p]
    else:
        pods, _, _ = await objects.list(_PODS, t.namespace, keep=selectors(request, _PODS))
    wanted = {p["metadata"]["uid"]: p for p in pods if (p.get("spec") or {}).get("nodeName")}
    node_names = {p["spec"]["nodeName"] for p in wanted.values()}
    nodes = [n for n in (await objects.list(_NODES, None))[0]
             if n["metadata"]["name"] in node_names]
    items = []
    for summary in await _summaries(request, nodes):
        for stats in summary.get("pods") or []:
            pod = wanted.get((stats.get("podRef") or {}).get("uid", ""))
            containers = [{"name": c["name"], "usage": u} for c in stats.get("containers") or []
                          if (u := _usage(c))]
            if pod is not None and containers:
                sampled = stats.get("cpu") or stats["containers"][0]["cpu"]
                items.append({"metadata": _meta(pod), "timestamp": sampled["time"],
                              "window": WINDOW, "containers": containers})
    return items


async def handle(request: web.Request, t: Target) -> web.Response:
    if request.method != "GET" or t.subresource:
        raise errors.method_not_allowed(f"{t.res.plural}.metrics.k8s.io supports get and list "
                                        "only")
    kind = t.res.kind
    items = await (node_metrics if kind == "NodeMetrics" else pod_metrics)(request, t)
    for item in items:
        item.update({"kind": kind, "apiVersion": GROUP_VERSION})
    if t.name is not None:
        if not items:
            # metrics-server's wording: the kind's lower-case name, namespace/name for pods.
            name = f"{t.namespace}/{t.name}" if t.namespace else t.name
            raise errors.not_found("metrics.k8s.io", kind.lower(), name)
        return codec.json_response(items[0])
    items.sort(key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]))
    return codec.json_response({"kind": f"{kind}List", "apiVersion": GROUP_VERSION,
                                "metadata": {}, "items": items})
