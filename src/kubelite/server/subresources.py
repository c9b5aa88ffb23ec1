"""Subresources (status, scale, binding, eviction, token, finalize) and the virtual
review resources that are answered, never stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from kubelite.api import errors
from kubelite.api import patch as patches
from kubelite.api.registry import Resource, lookup
from kubelite.server import codec, nodeauthz, streaming
from kubelite.server.auth import UserInfo, authorize, node_name_of
from kubelite.server.context import (
    Target,
    ctx,
    dry_run,
    field_manager,
    user_of,
)
from kubelite.server.eviction import check_budgets
from kubelite.server.objects import DeleteOptions, now_rfc3339, parse_rv
from kubelite.server.writes import PATCH_TYPES, Writer, writer_of

Obj = dict[str, Any]
_PODS = lookup("", "v1", "pods")


def _selector_string(selector: dict[str, Any] | None) -> str:
    """A metav1.LabelSelector as the query string Scale.status.selector carries."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def to_scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                          "creationTimestamp") if k in meta},
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": _selector_string(obj.get("spec", {}).get("selector")),
        },
    }


async def handle_status(request: web.Request, t: Target) -> web.Response:
    writer = writer_of(request)
    if request.method == "GET":
        return codec.json_response(await writer.objects.get(t.res, t.namespace, t.name or ""))
    if request.method == "PATCH":
        return await writer.handle_patch(request, t)
    return await writer.handle_replace(request, t)


async def handle_finalize(request: web.Request, t: Target) -> web.Response:
    if request.method != "PUT":
        raise errors.method_not_allowed("finalize supports PUT only")
    return await writer_of(request).handle_replace(request, t)


async def handle_scale(request: web.Request, t: Target) -> web.Response:
    assert t.name is not None
    writer = writer_of(request)
    if request.method == "GET":
        return codec.json_response(to_scale(await writer.objects.get(t.res, t.namespace, t.name)))
    body = await codec.read_body(request)
    if request.method == "PATCH":
        ptype = PATCH_TYPES.get(codec.media_type(request))
        if ptype is None or ptype == "apply":
            raise errors.unsupported_media_type(codec.media_type(request))
        patch = codec.decode_body("application/json", body)
        pinned = None
    else:
        ptype = "replace"
        patch = codec.decode_object(codec.media_type(request), body)
        pinned = parse_rv(patch["metadata"].get("resourceVersion"))

    def mutate(current: Obj) -> Obj:
        scale = to_scale(current)
        if ptype == "json":
            scale = patches.json_patch(scale, patch)
        elif ptype in ("merge", "strategic"):
            scale = patches.merge_patch(scale, patch)
        else:
            scale = patch
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise errors.invalid("autoscaling", "Scale", t.name or "", [errors.Cause(
                errors.FIELD_INVALID, f"Invalid value: {replicas!r}: must be an integer",
                "spec.replicas")])
        if replicas < 0:
            raise errors.invalid("autoscaling", "Scale", t.name or "", [errors.Cause(
                errors.FIELD_INVALID,
                f"Invalid value: {replicas}: must be greater than or equal to 0",
                "spec.replicas")])
        current.setdefault("spec", {})["replicas"] = replicas
        return current

    parent = Target(t.res, t.namespace, t.name)
    stored, _ = await writer.guaranteed_update(
        parent, mutate, manager=field_manager(request), fv="Ignore", dry=dry_run(request),
        precondition_rv=pinned)
    return codec.json_response(to_scale(stored))


async def bind_pod(writer: Writer, namespace: str, name: str, binding: Obj, *,
                   dry: bool) -> None:
    target = binding.get("target") or {}
    node = target.get("name")
    if not node:
        raise errors.invalid("", "Binding", name, [errors.Cause(
            errors.FIELD_REQUIRED, "Required value", "target.name")])
    assert _PODS is not None

    def bound(pod: Obj) -> Obj:
        """The pod assigned to the node, sharing every part it does not change with
        `pod` (a binding is the scheduler's hot path: no deep copy, no validation or
        managedFields work, since nothing but these two fields can differ)."""
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict("", "pods", name, "pod is being deleted, cannot be assigned "
                                  "to a host")
        current = pod["spec"].get("nodeName")
        if current:
            raise errors.conflict("", "pods", name,
                                  f"pod {name} is already assigned to node \"{current}\"")
        status = pod.get("status") or {}
        conditions = [c for c in status.get("conditions") or []
                      if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True",
                           "lastProbeTime": None, "lastTransitionTime": now_rfc3339()})
        return {**pod, "metadata": dict(pod["metadata"]),
                "spec": {**pod["spec"], "nodeName": node},
                "status": {**status, "conditions": conditions}}

    # The binding writes spec.nodeName and the PodScheduled condition together, which
    # neither a main-resource nor a status write may do on its own.
    for attempt in range(8):
        old = await writer.objects.get(_PODS, namespace, name)
        try:
            await writer.objects.update(_PODS, bound(old), old=old,
                                        expected_rv=int(old["metadata"]["resourceVersion"]),
                                        dry_run=dry)
            return
        except errors.APIError as exc:
            if exc.reason != "Conflict" or "modified" not in exc.message or attempt == 7:
                raise


async def handle_binding(request: web.Request, t: Target) -> web.Response:
    if request.method != "POST":
        raise errors.method_not_allowed("binding supports POST only")
    body = codec.decode_object(codec.media_type(request), await codec.read_body(request))
    name = t.name or body["metadata"].get("name", "")
    await bind_pod(writer_of(request), t.namespace or "default", name, body,
                   dry=dry_run(request))
    return codec.json_response(codec.success_status(), status=201)


async def handle_eviction(request: web.Request, t: Target) -> web.Response:
    """Evict a pod: a graceful delete, refused with 429 while a PodDisruptionBudget
    allows no disruption (eviction.py takes one from the budget's status)."""
    if request.method != "POST":
        raise errors.method_not_allowed("eviction supports POST only")
    assert t.name is not None
    body = codec.decode_object(codec.media_type(request), await codec.read_body(request))
    objects = ctx(request).objects
    pod = await objects.get(t.res, t.namespace, t.name)
    await check_budgets(objects, pod, dry=dry_run(request))
    options = body.get("deleteOptions") or {}
    await objects.delete(t.res, t.namespace, t.name, DeleteOptions(
        grace_period_seconds=options.get("gracePeriodSeconds"), dry_run=dry_run(request)))
    return codec.json_response(codec.success_status(), status=201)


async def handle_token(request: web.Request, t: Target) -> web.Response:
    if request.method != "POST":
        raise errors.method_not_allowed("token supports POST only")
    assert t.name is not None
    body = codec.decode_object(codec.media_type(request), await codec.read_body(request))
    sa = await ctx(request).objects.get(t.res, t.namespace, t.name)
    spec = body.get("spec") or {}
    seconds = spec.get("expirationSeconds") or 3600
    if not isinstance(seconds, int) or seconds < 600:
        raise errors.invalid("authentication.k8s.io", "TokenRequest", t.name, [errors.Cause(
            errors.FIELD_INVALID, "may not specify a duration less than 10 minutes",
            "spec.expirationSeconds")])
    signer = ctx(request).signer
    audiences = spec.get("audiences") or [signer.issuer]
    token, exp = signer.service_account_token(
        t.namespace or "default", t.name, sa["metadata"]["uid"], audiences=audiences,
        seconds=seconds)
    body["apiVersion"], body["kind"] = "authentication.k8s.io/v1", "TokenRequest"
    body["metadata"] = {"name": t.name, "namespace": t.namespace,
                        "creationTimestamp": now_rfc3339()}
    body["spec"] = {**spec, "audiences": audiences, "expirationSeconds": seconds}
    body["status"] = {"token": token, "expirationTimestamp": dt.datetime.fromtimestamp(
        exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return codec.json_response(body, status=201)


async def _access_allowed(request: web.Request, user: UserInfo, attrs: Obj) -> bool:
    """The verdict a request with these resourceAttributes by `user` would get."""
    verb, group, resource = attrs.get("verb", ""), attrs.get("group", ""), attrs.get("resource", "")
    namespace = attrs.get("namespace") or None
    if authorize(user, verb, group, resource, namespace):
        return True
    node = node_name_of(user)
    if node is None:
        return False
    asked = nodeauthz.Attributes(verb=verb, group=group, resource=resource,
                                 subresource=attrs.get("subresource") or "",
                                 namespace=namespace, name=attrs.get("name") or None)
    return await nodeauthz.NodeAuthorizer(ctx(request).objects).allowed(node, asked)


async def handle_review(request: web.Request, res: Resource) -> web.Response:
    body = codec.decode_object(codec.media_type(request), await codec.read_body(request))
    user = user_of(request)
    body["apiVersion"], body["kind"] = res.api_version, res.kind
    body.setdefault("metadata", {})["creationTimestamp"] = None
    spec = body.get("spec") or {}
    if res.plural == "subjectaccessreviews":
        # About the user in the spec: how node agents authorize their callers.
        user = UserInfo(spec.get("user") or "", uid=spec.get("uid") or "",
                        groups=tuple(spec.get("groups") or ()), extra=spec.get("extra") or {})
    if res.plural in ("selfsubjectaccessreviews", "subjectaccessreviews"):
        allowed = await _access_allowed(request, user, spec.get("resourceAttributes") or {})
        body["status"] = {"allowed": allowed}
        if not allowed:
            body["status"]["reason"] = "no RBAC policy matched"
    else:
        body["status"] = {"userInfo": user.to_dict()}
    return codec.json_response(body, status=201)


SUBRESOURCE_HANDLERS = {
    "status": handle_status,
    "scale": handle_scale,
    "binding": handle_binding,
    "eviction": handle_eviction,
    "token": handle_token,
    "finalize": handle_finalize,
    "log": streaming.handle_log,
    "exec": streaming.handle_exec,
    "attach": streaming.handle_attach,
    "portforward": streaming.handle_portforward,
}

__all__ = ["SUBRESOURCE_HANDLERS", "bind_pod", "handle_binding", "handle_review", "to_scale"]
