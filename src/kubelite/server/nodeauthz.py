"""The Node authorizer: what a node's credential (`system:node:<name>` in
`system:nodes`) may do, as Kubernetes' Node authorizer, the `system:node` role and
the NodeRestriction admission plugin do together.

A node may:
- read Nodes, Pods, Services, Endpoints, EndpointSlices, PersistentVolumes and
  storage classes; write only its own Node (and its status);
- read a Secret, ConfigMap, PersistentVolumeClaim or ServiceAccount (and request
  a ServiceAccount token) only when a pod bound to it uses that object;
- update the status of, and delete, only pods bound to it;
- read and write only its own Lease in kube-node-lease;
- create and update events.
Everything else is refused (403). kubelite differs in one place: Kubernetes lets
a node read only the PersistentVolumes its pods' claims are bound to; kubelite's
local-path sweeper lists them all, so a node may read every PersistentVolume
(they hold no secret data).

The relations are looked up in the store at each request rather than kept in a
graph: nodes make few such requests (once per pod start), and a lookup is one
namespace's pods.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubelite.api.registry import lookup
from kubelite.server.auth import UserInfo, node_name_of
from kubelite.server.auth import authorize as authorize_user
from kubelite.server.context import Target, ctx
from kubelite.server.objects import Objects

Obj = dict[str, Any]

READ = frozenset({"get", "list", "watch"})
WRITE_OWN = frozenset({"get", "create", "update", "patch", "delete"})
EVENT_WRITES = frozenset({"create", "update", "patch"})
LEASE_NAMESPACE = "kube-node-lease"

# (group, resource) a node may read whatever it is.
_READABLE = frozenset({
    ("", "nodes"), ("", "pods"), ("", "services"), ("", "endpoints"),
    ("", "persistentvolumes"), ("discovery.k8s.io", "endpointslices"),
    ("storage.k8s.io", "storageclasses"), ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "csidrivers"), ("storage.k8s.io", "volumeattachments"),
    ("node.k8s.io", "runtimeclasses"),
})
# Objects a node reads only through a pod bound to it.
_POD_RELATED = frozenset({"secrets", "configmaps", "persistentvolumeclaims", "serviceaccounts"})
# Reviews about oneself, which every authenticated user may ask (system:basic-user).
_SELF_REVIEWS = frozenset({("authorization.k8s.io", "selfsubjectaccessreviews"),
                           ("authentication.k8s.io", "selfsubjectreviews")})
# Delegated authorization: a node asks whether its callers may use its endpoint
# (the system:node role grants this in Kubernetes).
_DELEGATED_REVIEWS = frozenset({("authorization.k8s.io", "subjectaccessreviews")})
_PODS = lookup("", "v1", "pods")


@dataclass(frozen=True, slots=True)
class Attributes:
    """One request as the authorizer sees it. For a create, `name` is the name in
    the body; for a list or watch, the name of a `metadata.name=` field selector."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None


def pod_uses(pod: Obj, resource: str) -> set[str]:
    """The names of the objects of `resource` (secrets, configmaps,
    persistentvolumeclaims, serviceaccounts) that `pod` uses."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    names: set[str] = set()
    if resource == "serviceaccounts":
        names.add(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        return names
    if resource == "secrets":
        names.update(r.get("name", "") for r in spec.get("imagePullSecrets") or [])
    for vol in spec.get("volumes") or []:
        if resource == "persistentvolumeclaims":
            if (claim := vol.get("persistentVolumeClaim")) is not None:
                names.add(claim.get("claimName", ""))
            if vol.get("ephemeral") is not None:
                names.add(f"{meta.get('name', '')}-{vol.get('name', '')}")
            continue
        key, field = ("secret", "secretName") if resource == "secrets" else ("configMap", "name")
        if (source := vol.get(key)) is not None:
            names.add(source.get(field, ""))
        for projected in (vol.get("projected") or {}).get("sources") or []:
            if (source := projected.get(key)) is not None:
                names.add(source.get("name", ""))
        for driver_ref in ("csi", "cephfs", "rbd", "flexVolume", "iscsi", "azureFile"):
            ref = ((vol.get(driver_ref) or {}).get("nodePublishSecretRef")
                   or (vol.get(driver_ref) or {}).get("secretRef"))
            if resource == "secrets" and ref:
                names.add(ref.get("name", ""))
    if resource in ("secrets", "configmaps"):
        ref_key, from_key = (("secretKeyRef", "secretRef") if resource == "secrets"
                             else ("configMapKeyRef", "configMapRef"))
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
                      *(spec.get("ephemeralContainers") or [])]
        for c in containers:
            for env in c.get("env") or []:
                if (ref := (env.get("valueFrom") or {}).get(ref_key)) is not None:
                    names.add(ref.get("name", ""))
            for env_from in c.get("envFrom") or []:
                if (ref := env_from.get(from_key)) is not None:
                    names.add(ref.get("name", ""))
    names.discard("")
    return names


class NodeAuthorizer:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    async def allowed(self, node: str, a: Attributes) -> bool:
        key = (a.group, a.resource)
        if key in _SELF_REVIEWS or key in _DELEGATED_REVIEWS:
            return a.verb == "create"
        if a.resource == "events" and a.group in ("", "events.k8s.io"):
            return a.verb in EVENT_WRITES and not a.subresource
        if key == ("", "nodes"):
            if a.verb in READ and not a.subresource:
                return True
            own = a.name == node and a.verb in WRITE_OWN
            return own and a.subresource in ("", "status")
        if key == ("coordination.k8s.io", "leases"):
            return (a.namespace == LEASE_NAMESPACE and a.name == node and a.verb in WRITE_OWN
                    and not a.subresource)
        if key == ("", "pods"):
            return await self._pod(node, a)
        if key in _READABLE:
            return a.verb in READ and not a.subresource
        if a.group == "" and a.resource in _POD_RELATED:
            return await self._related(node, a)
        return False

    async def _pod(self, node: str, a: Attributes) -> bool:
        if a.verb in READ and not a.subresource:
            return True
        # The status of, and the final deletion of, pods bound to this node.
        writes = a.verb in ("update", "patch") and a.subresource == "status"
        deletes = a.verb == "delete" and not a.subresource
        if not (writes or deletes) or not a.name or not a.namespace:
            return False
        assert _PODS is not None
        pod = await self.objects.get_or_none(_PODS, a.namespace, a.name)
        return pod is not None and (pod.get("spec") or {}).get("nodeName") == node

    async def _related(self, node: str, a: Attributes) -> bool:
        if a.resource == "serviceaccounts":
            allowed = (a.verb == "create" and a.subresource == "token") or (
                a.verb == "get" and not a.subresource)
        elif a.resource == "persistentvolumeclaims" and a.subresource == "status":
            allowed = a.verb in ("get", "update", "patch")
        else:
            allowed = a.verb in READ and not a.subresource
        if not allowed or not a.name or not a.namespace:
            return False
        return a.name in await self._used_by_node(node, a.namespace, a.resource)

    async def _used_by_node(self, node: str, namespace: str, resource: str) -> set[str]:
        assert _PODS is not None
        pods, _, _ = await self.objects.list(
            _PODS, namespace, keep=lambda p: (p.get("spec") or {}).get("nodeName") == node)
        used: set[str] = set()
        for pod in pods:
            used |= pod_uses(pod, resource)
        return used


def selected_name(field_selector: str) -> str | None:
    """The name a `metadata.name=X` field selector (its only term) asks for."""
    selector = field_selector.strip()
    for op in ("==", "="):
        key, sep, value = selector.partition(op)
        if sep and key.strip() == "metadata.name" and "," not in value and value.strip():
            return value.strip()
    return None


async def _peek_body_name(request: web.Request) -> str | None:
    """The metadata.name of a create's JSON body, read and put back for the handler.
    aiohttp marks unread_data deprecated; a node's creates are small and rare."""
    if request.content_length is None or request.content_length > 65536:
        return None
    data = await request.content.readexactly(request.content_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        request.content.unread_data(data)
    try:
        body = json.loads(data)
    except ValueError:
        return None
    name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


async def authorize(request: web.Request, user: UserInfo, verb: str, t: Target) -> bool:
    """Whether `user` may do `verb` on the request's target: nodes by the rules
    above, every other user by auth.authorize."""
    if authorize_user(user, verb, t.res.group, t.res.plural, t.namespace):
        return True
    if (t.res.group, t.res.plural) in _SELF_REVIEWS:
        return verb == "create"
    node = node_name_of(user)
    if node is None:
        return False
    name = t.name
    if verb == "create" and name is None and t.res.plural in ("nodes", "leases"):
        name = await _peek_body_name(request)
    elif verb in ("list", "watch") and name is None:
        name = selected_name(request.query.get("fieldSelector", ""))
    attrs = Attributes(verb=verb, group=t.res.group, resource=t.res.plural,
                       subresource=t.subresource, namespace=t.namespace, name=name)
    return await NodeAuthorizer(ctx(request).objects).allowed(node, attrs)
