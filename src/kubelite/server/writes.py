"""Create, update, patch and delete: the write pipeline of the API server.

    decode -> type and namespace checks -> strategy (what this write may change)
    -> defaults -> validation -> admission -> managedFields -> store

Patches and unconditional updates are read-modify-write loops retried on
conflict, as the apiserver's GuaranteedUpdate.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kubelite.api import errors
from kubelite.api import patch as patches
from kubelite.api.apply import server_side_apply, update_managed_fields
from kubelite.api.defaults import apply_defaults
from kubelite.api.registry import Resource
from kubelite.api.schemas import kind_schema
from kubelite.api.validation import to_api_error, validate
from kubelite.server import codec, ipalloc, strategy
from kubelite.server.admission import admit, admit_delete
from kubelite.server.context import (
    Target,
    ctx,
    dry_run,
    field_manager,
    field_validation,
    query_flag,
    query_int,
)
from kubelite.server.objects import DeleteOptions, Objects, modified, now_rfc3339, parse_rv

Obj = dict[str, Any]
_RETRIES = 8

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}


def _schema(res: Resource) -> dict[str, Any] | None:
    return kind_schema(res.group, res.version, res.kind)


def _check_type(res: Resource, obj: Obj) -> None:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version is None and kind is None:
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        return
    if api_version != res.api_version or kind != res.kind:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({res.api_version})" if api_version != res.api_version else
            f"the kind in the data ({kind}) does not match the expected kind ({res.kind})"
        )


def _raise_invalid(res: Resource, obj: Obj, causes: list[errors.Cause]) -> None:
    err = to_api_error(res, obj["metadata"].get("name", ""), causes)
    if err is not None:
        raise err


def _warning_headers(warnings: list[str]) -> dict[str, str]:
    if not warnings:
        return {}
    return {"Warning": ", ".join(f'299 - "{w}"' for w in warnings[:20])}


class Writer:
    """The write pipeline for one server; handlers call it per request."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    async def create(
        self, res: Resource, namespace: str | None, obj: Obj, *, manager: str, fv: str,
        dry: bool, applied: Obj | None = None, force: bool = False,
    ) -> tuple[Obj, list[str]]:
        _check_type(res, obj)
        # Kubernetes decodes into typed structs, where a JSON null is the zero value
        # and omitted again: kubectl sends `creationTimestamp: null` in templates.
        obj = patches.without_nulls(obj)
        if applied is not None:
            # The applier owns what it sent, not what defaulting adds afterwards.
            obj = server_side_apply(None, obj, manager=manager, force=force,
                                    schema=_schema(res), now=now_rfc3339())
        meta = obj["metadata"]
        if res.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and not meta.get("generateName"):
            raise errors.invalid(res.group, res.kind, "", [errors.Cause(
                errors.FIELD_REQUIRED, "Required value: name or generateName is required",
                "metadata.name")])
        strategy.prepare_for_create(res, obj)
        self.objects.new_identity(obj)
        apply_defaults(res, obj)
        causes, warnings = validate(res, obj, field_validation=fv)
        if causes:
            _raise_invalid(res, obj, causes)
        await admit(self.objects, res, obj, operation="CREATE")
        if applied is None:
            update_managed_fields(None, obj, manager=manager, schema=_schema(res),
                                  now=now_rfc3339())
        held = ipalloc.reserve(self.objects, obj, None, plural=res.plural, dry_run=dry)
        try:
            stored = await self.objects.create(res, obj, dry_run=dry)
        except BaseException:
            held.rollback()
            raise
        held.commit()
        return stored, warnings

    async def update(
        self, res: Resource, new: Obj, old: Obj, *, subresource: str, manager: str, fv: str,
        dry: bool, expected_rv: int | None, operation: str = "Update", managed: bool = True,
    ) -> tuple[Obj, list[str]]:
        # Defaults first, as decoding does in Kubernetes, so that the strategy
        # compares like with like (a defaulted field is no spec change).
        new = patches.without_nulls(new)
        apply_defaults(res, new)
        prepared = strategy.prepare_for_update(res, new, old, subresource=subresource)
        causes, warnings = validate(res, prepared, old=old, field_validation=fv)
        if causes:
            _raise_invalid(res, prepared, causes)
        await admit(self.objects, res, prepared, operation="UPDATE")
        held = (ipalloc.reserve(self.objects, prepared, old, plural=res.plural, dry_run=dry)
                if subresource == "" else ipalloc.Reservation())
        if managed:
            update_managed_fields(old, prepared, manager=manager, operation=operation,
                                  schema=_schema(res), now=now_rfc3339(),
                                  subresource=subresource)
        try:
            stored = await self.objects.update(res, prepared, expected_rv=expected_rv, old=old,
                                               dry_run=dry)
        except BaseException:
            held.rollback()
            raise
        held.commit()
        return stored, warnings

    async def guaranteed_update(
        self, t: Target, mutate, *, manager: str, fv: str, dry: bool,
        precondition_rv: int | None = None, operation: str = "Update", managed: bool = True,
    ) -> tuple[Obj, list[str]]:
        """Read, `mutate(copy_of_current) -> new`, write; retried on conflict unless
        the caller pinned a resourceVersion."""
        assert t.name is not None
        for attempt in range(_RETRIES):
            old = await self.objects.get(t.res, t.namespace, t.name)
            new = mutate(patches.deep_copy(old))
            rv = precondition_rv
            if rv is None:
                rv = int(old["metadata"]["resourceVersion"])
            try:
                return await self.update(
                    t.res, new, old, subresource=t.subresource, manager=manager, fv=fv, dry=dry,
                    expected_rv=rv, operation=operation, managed=managed)
            except errors.APIError as exc:
                if exc.code != 409 or exc.reason != "Conflict" or precondition_rv is not None:
                    raise
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # ---- request handlers --------------------------------------------------------------

    async def handle_create(self, request: web.Request, t: Target) -> web.Response:
        body = await codec.read_body(request)
        obj = codec.decode_object(codec.media_type(request), body)
        stored, warnings = await self.create(
            t.res, t.namespace, obj, manager=field_manager(request),
            fv=field_validation(request), dry=dry_run(request))
        return codec.json_response(stored, status=201, headers=_warning_headers(warnings))

    async def handle_replace(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        body = await codec.read_body(request)
        new = codec.decode_object(codec.media_type(request), body)
        _check_type(t.res, new)
        meta = new["metadata"]
        if meta.get("name") and meta["name"] != t.name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({t.name})")
        meta["name"] = t.name
        if t.res.namespaced:
            if meta.get("namespace") and meta["namespace"] != t.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request")
            meta["namespace"] = t.namespace
        pinned = parse_rv(meta.get("resourceVersion"))
        stored, warnings = await self.guaranteed_update(
            t, lambda _old: new, manager=field_manager(request), fv=field_validation(request),
            dry=dry_run(request), precondition_rv=pinned)
        return codec.json_response(stored, headers=_warning_headers(warnings))

    async def handle_patch(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        ptype = PATCH_TYPES.get(codec.media_type(request))
        if ptype is None:
            raise errors.unsupported_media_type(codec.media_type(request))
        body = await codec.read_body(request)
        patch = codec.decode_body("application/json" if ptype != "apply" else
                                  "application/yaml", body)
        manager, fv, dry = field_manager(request), field_validation(request), dry_run(request)
        force = query_flag(request, "force")
        if ptype == "apply":
            if not request.query.get("fieldManager"):
                raise errors.bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set")
            if not isinstance(patch, dict):
                raise errors.bad_request("apply patch must be an object")
            patch.setdefault("metadata", {})
            existing = await self.objects.get_or_none(t.res, t.namespace, t.name)
            if existing is None and not t.subresource:
                patch["metadata"].setdefault("name", t.name)
                stored, warnings = await self.create(
                    t.res, t.namespace, patches.deep_copy(patch), manager=manager, fv=fv, dry=dry,
                    applied=patch, force=force)
                return codec.json_response(stored, status=201,
                                           headers=_warning_headers(warnings))
        schema = _schema(t.res)

        def mutate(current: Obj) -> Obj:
            if ptype == "json":
                return patches.json_patch(current, patch)
            if ptype == "merge":
                return patches.merge_patch(current, patch)
            if ptype == "strategic":
                if not isinstance(patch, dict):
                    raise errors.bad_request("strategic merge patch must be a JSON object")
                return patches.strategic_merge_patch(current, patch, schema)
            return server_side_apply(current, patch, manager=manager, force=force,
                                     schema=schema, now=now_rfc3339())

        def checked(current: Obj) -> Obj:
            current_rv = current["metadata"]["resourceVersion"]
            new = mutate(current)
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise errors.bad_request("the patch did not produce an object")
            if new["metadata"].get("resourceVersion", current_rv) != current_rv:
                # A patch that names a resourceVersion makes itself conditional.
                raise modified(t.res, t.name or "")
            new["metadata"]["name"] = t.name
            if t.res.namespaced:
                new["metadata"]["namespace"] = t.namespace
            return new

        stored, warnings = await self.guaranteed_update(
            t, checked, manager=manager, fv=fv, dry=dry,
            operation="Apply" if ptype == "apply" else "Update", managed=ptype != "apply")
        return codec.json_response(stored, headers=_warning_headers(warnings))

    async def handle_delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        admit_delete(t.res, t.name)
        opts = await delete_options(request)
        obj, gone = await self.objects.delete(t.res, t.namespace, t.name, opts)
        if gone and t.res.plural != "pods":
            # The apiserver answers most deletes with the object as it was last stored.
            return codec.json_response(obj)
        return codec.json_response(obj, status=200 if gone else 202 if
                                   opts.propagation_policy == "Foreground" else 200)

    async def handle_delete_collection(self, request: web.Request, t: Target,
                                       keep) -> web.Response:
        opts = await delete_options(request)
        items, _, _ = await self.objects.list(t.res, t.namespace, keep=keep)
        deleted = []
        for obj in items:
            name = obj["metadata"]["name"]
            if t.res.plural == "namespaces":
                try:
                    admit_delete(t.res, name)
                except errors.APIError:
                    continue
            try:
                gone, _ = await self.objects.delete(
                    t.res, obj["metadata"].get("namespace"), name, opts)
            except errors.APIError as exc:
                if exc.code == 404:
                    continue
                raise
            deleted.append(gone)
        return codec.json_response({
            "kind": f"{t.res.kind}List", "apiVersion": t.res.api_version,
            "metadata": {}, "items": deleted,
        })


async def delete_options(request: web.Request) -> DeleteOptions:
    body: Obj = {}
    if request.can_read_body:
        raw = await codec.read_body(request)
        if raw.strip():
            decoded = codec.decode_body(codec.media_type(request), raw)
            if not isinstance(decoded, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            body = decoded
    grace = body.get("gracePeriodSeconds", query_int(request, "gracePeriodSeconds"))
    policy = body.get("propagationPolicy", request.query.get("propagationPolicy"))
    if body.get("orphanDependents") is True or request.query.get("orphanDependents") == "true":
        policy = policy or "Orphan"
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise errors.bad_request(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            f'"Foreground", "Background", "Orphan"')
    if grace is not None and not isinstance(grace, int):
        raise errors.bad_request("gracePeriodSeconds must be an integer")
    pre = body.get("preconditions") or {}
    dry = "All" in (body.get("dryRun") or []) or dry_run(request)
    return DeleteOptions(grace_period_seconds=grace, propagation_policy=policy,
                         precondition_uid=pre.get("uid"),
                         precondition_rv=pre.get("resourceVersion"), dry_run=dry)


def writer_of(request: web.Request) -> Writer:
    return Writer(ctx(request).objects)


__all__ = ["PATCH_TYPES", "Writer", "delete_options", "writer_of"]
