"""ControllerRevisions: the pod-template history of StatefulSets and DaemonSets.

As Kubernetes' controller/history package: a revision's `data` is the owner's
template as a strategic-merge patch (`{"spec": {"template": {..., "$patch":
"replace"}}}`), its name `<owner>-<hash>`, and `revision` a number that grows
each time a template becomes the update target again (a rollback reuses the
old object rather than making a copy). A name taken by a revision with other
data is a hash collision: the owner's status.collisionCount goes up and the
hash changes with it.
"""

from __future__ import annotations

import copy
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import AlreadyExists, Client, Conflict, NotFound
from kubelite.client.controller import controller_ref
from kubelite.controllers import podutil
from kubelite.controllers.deployment import template_hash

Obj = dict[str, Any]

REVISIONS = lookup("apps", "v1", "controllerrevisions")
HASH_LABEL = "controller.kubernetes.io/hash"
POD_REVISION_LABEL = "controller-revision-hash"


class HashCollision(Exception):
    """The revision name is taken by other data; retry with collisionCount + 1."""


def revision_data(owner: Obj) -> Obj:
    template = copy.deepcopy(owner["spec"]["template"])
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: Obj) -> Obj:
    """The pod template a revision records."""
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def revision_hash(owner: Obj, collision_count: int) -> str:
    return template_hash(revision_data(owner), collision_count)


def owned(revisions: list[Obj], owner: Obj) -> list[Obj]:
    """The owner's revisions, oldest first."""
    uid = owner["metadata"]["uid"]
    mine = [r for r in revisions if (controller_ref(r) or {}).get("uid") == uid]
    return sorted(mine, key=lambda r: (int(r.get("revision", 0)), r["metadata"]["name"]))


def _same(revision: Obj, data: Obj) -> bool:
    return template_of(revision) == template_of({"data": data})


async def ensure(client: Client, owner: Obj, revisions: list[Obj], *,
                 collision_count: int) -> Obj:
    """The revision of the owner's current template, created or renumbered to be the
    newest. Raises HashCollision when its name holds a foreign template."""
    assert REVISIONS is not None
    data = revision_data(owner)
    top = max((int(r.get("revision", 0)) for r in revisions), default=0)
    for rev in revisions:
        if _same(rev, data):
            if int(rev.get("revision", 0)) == top:
                return rev
            return await client.patch(REVISIONS, rev["metadata"]["name"],
                                      {"revision": top + 1},
                                      namespace=rev["metadata"]["namespace"])
    meta = owner["metadata"]
    digest = template_hash(data, collision_count)
    labels = dict(((owner["spec"].get("selector") or {}).get("matchLabels")) or {})
    labels[HASH_LABEL] = digest
    body = {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": f"{meta['name']}-{digest}", "namespace": meta["namespace"],
                     "labels": labels, "ownerReferences": [podutil.owner_reference(owner)]},
        "data": data, "revision": top + 1,
    }
    try:
        return await client.create(REVISIONS, body, meta["namespace"])
    except AlreadyExists:
        found = await client.get(REVISIONS, body["metadata"]["name"], meta["namespace"])
        if (controller_ref(found) or {}).get("uid") == meta["uid"] and _same(found, data):
            return found
        raise HashCollision(body["metadata"]["name"]) from None


async def truncate(client: Client, revisions: list[Obj], *, live: set[str],
                   limit: int) -> None:
    """Delete the oldest revisions no pod and no status names, beyond `limit`."""
    assert REVISIONS is not None
    history = [r for r in revisions if r["metadata"]["name"] not in live]
    for rev in history[:max(0, len(history) - limit)]:
        try:
            await client.delete(REVISIONS, rev["metadata"]["name"], rev["metadata"]["namespace"],
                                preconditions={"uid": rev["metadata"]["uid"]})
        except (NotFound, Conflict):
            pass
