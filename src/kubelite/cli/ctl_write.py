"""`kubelite ctl apply` (server-side apply) and `kubelite ctl delete`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from kubelite.api.registry import Resource
from kubelite.cli.ctl_common import (
    CtlError,
    Obj,
    namespace_of,
    read_manifests,
    resource_of,
    server_error,
    targets,
    type_name,
)
from kubelite.client import ApiError, Client, Conflict, NotFound

FIELD_MANAGER = "kubelite-ctl"
CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}
# A watch is re-opened after this long, in case its stream ended quietly.
_WATCH_SECONDS = 30


def _placed(args: argparse.Namespace, client: Client, res: Resource, obj: Obj) -> str | None:
    """The namespace an object from a file goes to; as kubectl, a namespace in the file
    that contradicts an explicit -n is an error."""
    if not res.namespaced:
        return None
    written = (obj.get("metadata") or {}).get("namespace")
    if written and args.namespace and written != args.namespace:
        raise CtlError(f'error: the namespace from the provided object "{written}" does not '
                       f'match the namespace "{args.namespace}". You must pass '
                       f"'--namespace={written}' to perform this operation.")
    return written or namespace_of(args, res, client)


async def _apply_one(client: Client, args: argparse.Namespace, obj: Obj) -> str:
    res = resource_of(obj)
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise CtlError(f"error: {type_name(res)}: resource name may not be empty")
    ns = _placed(args, client, res, obj)
    if ns:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": ns}}
    try:
        before: Obj | None = await client.get(res, name, ns)
    except NotFound:
        before = None
    # Server-side apply creates a missing object too, so one request covers both cases and
    # the fields are owned by the Apply manager from the start.
    after = await client.patch(res, name, obj, patch_type="apply", namespace=ns,
                               field_manager=FIELD_MANAGER, force=args.force_conflicts)
    if before is None:
        verb = "created"
    elif before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]:
        verb = "unchanged"
    else:
        verb = "configured"
    return f"{type_name(res)}/{name} {verb}"


async def cmd_apply(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for _source, obj in await asyncio.to_thread(read_manifests, args.filename, verb="apply"):
        try:
            print(await _apply_one(client, args, obj))
        except Conflict as exc:
            print(f"error: {exc.message}\nPlease review the fields above. Re-run with "
                  "--force-conflicts to take them over.", file=sys.stderr)
            failed = True
        except ApiError as exc:
            print(server_error(exc), file=sys.stderr)
            failed = True
    return 1 if failed else 0


async def wait_deleted(client: Client, res: Resource, name: str, ns: str | None,
                       uid: str) -> None:
    """Return once the object with this uid is gone (finalizers, foreground deletion)."""
    while True:
        try:
            current = await client.get(res, name, ns)
        except NotFound:
            return
        if current["metadata"].get("uid") != uid:
            return
        events = client.watch(res, ns, field_selector=f"metadata.name={name}",
                              resource_version=current["metadata"]["resourceVersion"],
                              timeout_seconds=_WATCH_SECONDS)
        async with contextlib.aclosing(events) as stream:
            async for type_, _obj in stream:
                if type_ == "DELETED":
                    return


async def _delete_one(client: Client, args: argparse.Namespace, res: Resource, name: str,
                      ns: str | None) -> None:
    answer = await client.delete(res, name, ns, propagation_policy=CASCADE[args.cascade])
    print(f'{type_name(res)} "{name}" deleted')
    # A Status means it is gone already; the object itself means it waits for finalizers.
    if args.wait and answer.get("kind") != "Status":
        await wait_deleted(client, res, name, ns, answer["metadata"]["uid"])


async def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    if args.filename:
        if args.target:
            raise CtlError("error: there is no need to specify a resource type as a separate "
                           "argument when passing arguments via -f")
        objs = await asyncio.to_thread(read_manifests, args.filename, verb="delete")
        jobs = []
        for _source, obj in objs:
            res = resource_of(obj)
            jobs.append((res, obj["metadata"]["name"], _placed(args, client, res, obj)))
    else:
        jobs = []
        for res, names in targets(args.target):
            if not names:
                raise CtlError("error: resource(s) were provided, but no name was specified")
            jobs.extend((res, name, namespace_of(args, res, client)) for name in names)
    failed = False
    for res, name, ns in jobs:
        try:
            await _delete_one(client, args, res, name, ns)
        except ApiError as exc:
            print(server_error(exc), file=sys.stderr)
            failed = True
    return 1 if failed else 0
