"""The generic object store: API objects over the key-value `Store`.

This is where a write becomes an object with identity and history: uid, name
generation, timestamps, resourceVersion (the store's mod revision), generation,
graceful deletion and finalizers, optimistic concurrency. Kind-specific rules
come from `strategy`; defaulting, validation and admission are called by the
request handlers before `create` / `update` (see server/handlers.py).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kubelite.api import errors
from kubelite.api.clock import now_rfc3339
from kubelite.api.conversion import from_stored, to_stored
from kubelite.api.patch import deep_copy
from kubelite.api.registry import Resource
from kubelite.store import errors as store_errors
from kubelite.store.base import KV, Event, Store

Obj = dict[str, Any]

# The alphabet Kubernetes uses for generateName suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def generate_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


def new_uid() -> str:
    """A random (version 4) UUID, as uuid.uuid4() makes it at a quarter of the cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def decode(kv: KV) -> Obj:
    obj = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return obj


_HEAD = ("apiVersion", "kind", "metadata")
_META_KEY = b'"metadata":{'


def encode(obj: Obj) -> bytes:
    """Stored form: without resourceVersion (the store's revision is the truth), and
    with apiVersion, kind, metadata first, so that `with_rv` can splice the version
    into the bytes without decoding them."""
    meta = obj["metadata"]
    head = {k: obj[k] for k in _HEAD if k in obj}
    head["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    for key, value in obj.items():
        if key not in head:
            head[key] = value
    # orjson's output buffer keeps its whole allocation (16 KiB for a small pod);
    # stored values live long, so they get a copy of exactly their size.
    return bytes(memoryview(orjson.dumps(head)))


def decode_as(res: Resource, kv: KV) -> Obj:
    """A stored object at the version `res` serves (api/conversion.py)."""
    return from_stored(res, decode(kv))


def encode_as(res: Resource, obj: Obj) -> bytes:
    """An object at `res`'s version in the form it is stored in."""
    return encode(to_stored(res, obj))


def with_rv(kv: KV) -> bytes:
    """The stored object as JSON with metadata.resourceVersion set, without decoding.
    The first `"metadata":{` in an encoded object is the top-level key: encode puts
    it right after apiVersion and kind, whose string values cannot hold an
    unescaped quote."""
    at = kv.value.index(_META_KEY) + len(_META_KEY)
    rv = b'"resourceVersion":"%d"' % kv.mod_revision
    rest = kv.value[at:]
    return kv.value[:at] + rv + (rest if rest.startswith(b"}") else b"," + rest)


def modified(res: Resource, name: str) -> errors.APIError:
    """The 409 a write against a stale resourceVersion gets."""
    return errors.conflict(res.group, res.plural, name,
                           "the object has been modified; please apply your changes to the "
                           "latest version and try again")


def parse_rv(value: str | None, *, what: str = "resourceVersion") -> int | None:
    if value in (None, ""):
        return None
    try:
        rv = int(value)  # type: ignore[arg-type]
    except ValueError:
        raise errors.bad_request(f"invalid {what}: {value!r}") from None
    if rv < 0:
        raise errors.bad_request(f"invalid {what}: {value!r}")
    return rv


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


_VIEWS_LIMIT = 1024


class Objects:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Stored objects decoded once per version for readers that only look.
        self._views: dict[tuple[str, str, str], tuple[int, Obj]] = {}
        # ClusterIPs and NodePorts (server/ipalloc.py); the API server sets it up.
        self.service_allocator: Any = None

    # ---- reads ---------------------------------------------------------------------

    async def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        kv = await self.store.get(res.key(namespace, name))
        if kv is None:
            raise errors.not_found(res.group, res.plural, name)
        return decode_as(res, kv)

    async def get_or_none(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        kv = await self.store.get(res.key(namespace, name))
        return None if kv is None else decode_as(res, kv)

    async def peek(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        """As get_or_none, for a caller that only reads what it gets and must not
        change it: admission looks up the namespace (and the pod's PriorityClass) on
        every create, and decoding them again each time was a tenth of a create."""
        kv = await self.store.get(res.key(namespace, name))
        return None if kv is None else self.view(res, kv)

    def view(self, res: Resource, kv: KV) -> Obj:
        """`kv` decoded at `res`'s version, shared with other readers: read only."""
        cache_key = (res.group, res.version, kv.key)
        hit = self._views.get(cache_key)
        # Revisions are global: the same key at the same revision is the same value.
        if hit is not None and hit[0] == kv.mod_revision:
            return hit[1]
        obj = decode_as(res, kv)
        if len(self._views) >= _VIEWS_LIMIT:
            self._views.clear()
        self._views[cache_key] = (kv.mod_revision, obj)
        return obj

    async def list(
        self,
        res: Resource,
        namespace: str | None,
        *,
        revision: int | None = None,
        start_after: str | None = None,
        limit: int | None = None,
        keep: Callable[[Obj], bool] | None = None,
    ) -> tuple[list[Obj], int, str | None]:
        """Objects in key order; returns (items, list revision, last key if cut short).
        With `keep`, filtering happens before the limit is counted, as the apiserver
        fills a page with matching objects."""
        if keep is None:
            kvs, revision, last = await self.list_kvs(
                res, namespace, revision=revision, start_after=start_after, limit=limit)
            return [decode_as(res, kv) for kv in kvs], revision, last
        kept: list[Obj] = []

        def keep_kv(kv: KV) -> bool:
            obj = decode_as(res, kv)
            if keep(obj):
                kept.append(obj)
                return True
            return False

        _, revision, last = await self.list_kvs(
            res, namespace, revision=revision, start_after=start_after, limit=limit,
            keep=keep_kv)
        return kept, revision, last

    async def list_kvs(
        self,
        res: Resource,
        namespace: str | None,
        *,
        revision: int | None = None,
        start_after: str | None = None,
        limit: int | None = None,
        keep: Callable[[KV], bool] | None = None,
    ) -> tuple[list[KV], int, str | None]:
        """As `list`, but the stored entries themselves: a list served without
        selectors never decodes its objects (see `with_rv`)."""
        prefix = res.key_prefix(namespace)
        items: list[KV] = []
        cursor = start_after
        while True:
            want = None if limit is None else max(limit - len(items), 1) * (1 if keep is None else 2)
            try:
                page = await self.store.list(prefix, revision=revision, start_after=cursor,
                                             limit=want)
            except store_errors.Compacted as exc:
                raise errors.gone(
                    f"The provided continue parameter is too old to display a consistent list "
                    f"result (revision {exc.requested} is compacted). You can start a new list "
                    f"without the continue parameter."
                ) from None
            revision = page.revision
            for kv in page.items:
                if keep is None or keep(kv):
                    items.append(kv)
                    if limit is not None and len(items) >= limit:
                        more = page.more or kv is not page.items[-1]
                        return items, revision, kv.key if more else None
            if not page.more or not page.items:
                return items, revision, None
            cursor = page.items[-1].key

    def watch(self, res: Resource, namespace: str | None, since: int
              ) -> AsyncIterator[list[Event]]:
        """Events after `since`, in batches of those at hand."""
        return self.store.watch_batches(res.key_prefix(namespace), since_revision=since)

    # ---- writes --------------------------------------------------------------------

    def new_identity(self, obj: Obj) -> None:
        """Name from generateName, uid and creation time: what every create sets."""
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(meta["generateName"])
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_rfc3339()

    async def create(self, res: Resource, obj: Obj, *, dry_run: bool = False) -> Obj:
        meta = obj["metadata"]
        key = res.key(meta.get("namespace"), meta["name"])
        if dry_run:
            if await self.store.get(key) is not None:
                raise errors.already_exists(res.group, res.plural, meta["name"])
            return obj
        try:
            kv = await self.store.create(key, encode_as(res, obj))
        except store_errors.KeyExists:
            raise errors.already_exists(res.group, res.plural, meta["name"]) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def update(
        self, res: Resource, obj: Obj, *, expected_rv: int | None, old: Obj, dry_run: bool = False
    ) -> Obj:
        """Store `obj` in place of `old` (already prepared and validated by the caller).
        A write that changes nothing is not stored, as the apiserver skips no-op updates.
        Removing the last finalizer of an object being deleted deletes it."""
        meta = obj["metadata"]
        name = meta["name"]
        key = res.key(meta.get("namespace"), name)
        old_rv = old["metadata"]["resourceVersion"]
        if expected_rv is not None and expected_rv != int(old_rv):
            raise modified(res, name)
        if meta.get("deletionTimestamp") and not _pending_finalizers(res, obj) and not (
            _awaits_kubelet(res, obj)
        ):
            return await self._remove(res, key, obj, int(old_rv), dry_run=dry_run)
        if _same_but_version(obj, old):
            meta["resourceVersion"] = old_rv
            return obj
        if dry_run:
            return obj
        try:
            kv = await self.store.update(key, encode_as(res, obj), expected_revision=expected_rv)
        except store_errors.KeyNotFound:
            raise errors.not_found(res.group, res.plural, name) from None
        except store_errors.RevisionMismatch:
            raise modified(res, name) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def _remove(
        self, res: Resource, key: str, obj: Obj, expected: int | None, *, dry_run: bool
    ) -> Obj:
        if dry_run:
            return obj
        try:
            kv = await self.store.delete(key, expected_revision=expected)
        except store_errors.KeyNotFound:
            raise errors.not_found(res.group, res.plural, obj["metadata"]["name"]) from None
        except store_errors.RevisionMismatch:
            raise modified(res, obj["metadata"]["name"]) from None
        gone = decode_as(res, kv)
        if self.service_allocator is not None and res.plural == "services":
            self.service_allocator.release(gone)
        return gone

    async def delete(
        self, res: Resource, namespace: str | None, name: str, opts: DeleteOptions
    ) -> tuple[Obj, bool]:
        """Returns (object, deleted now). An object with finalizers, a foreground or
        orphan deletion, or a pod on a node with a grace period is only marked:
        deletionTimestamp set, finalizers added; the last finalizer's removal (or the
        node agent's final delete for pods) removes it."""
        for _ in range(16):
            current = await self.get(res, namespace, name)
            meta = current["metadata"]
            if opts.precondition_uid and opts.precondition_uid != meta.get("uid"):
                raise errors.conflict(
                    res.group, res.plural, name,
                    f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if opts.precondition_rv and opts.precondition_rv != meta["resourceVersion"]:
                raise errors.conflict(
                    res.group, res.plural, name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{opts.precondition_rv}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
            marked = self._mark_for_deletion(res, current, opts)
            if marked is current:
                return current, False
            rv = int(meta["resourceVersion"])
            try:
                if marked is None:
                    gone = await self._remove(res, res.key(namespace, name), current, rv,
                                              dry_run=opts.dry_run)
                    return gone, True
                if opts.dry_run:
                    return marked, False
                kv = await self.store.update(res.key(namespace, name), encode_as(res, marked),
                                             expected_revision=rv)
                marked["metadata"]["resourceVersion"] = str(kv.mod_revision)
                return marked, False
            except errors.APIError as exc:
                if exc.code != 409 or opts.precondition_rv:
                    raise
            except store_errors.RevisionMismatch:
                continue
            except store_errors.KeyNotFound:
                raise errors.not_found(res.group, res.plural, name) from None
        raise errors.conflict(res.group, res.plural, name, "too many concurrent writes")

    def _mark_for_deletion(self, res: Resource, current: Obj, opts: DeleteOptions) -> Obj | None:
        """The object marked for deletion, or None when it should go at once."""
        meta = current["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        policy = opts.propagation_policy
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        elif policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        grace = _grace_period(res, current, opts)
        if meta.get("deletionTimestamp"):
            # Already being deleted: a shorter grace period may still speed it up.
            if grace == 0 and res.plural == "pods" and not finalizers:
                return None
            if finalizers == list(meta.get("finalizers") or []):
                return current
        elif not finalizers and not grace and not _spec_finalizers(res, current):
            return None
        marked = deep_copy(current)
        mmeta = marked["metadata"]
        if not mmeta.get("deletionTimestamp"):
            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace or 0)
            mmeta["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            mmeta["deletionGracePeriodSeconds"] = grace or 0
        if finalizers:
            mmeta["finalizers"] = finalizers
        if res.plural == "namespaces":
            marked.setdefault("status", {})["phase"] = "Terminating"
        return marked


def _grace_period(res: Resource, obj: Obj, opts: DeleteOptions) -> int:
    """Only pods that a node may be running get a grace period; an unscheduled or
    finished pod goes at once, as in Kubernetes."""
    if res.plural != "pods":
        return 0
    if not obj.get("spec", {}).get("nodeName"):
        return 0
    if obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    if opts.grace_period_seconds is not None:
        return max(opts.grace_period_seconds, 0)
    return int(obj["spec"].get("terminationGracePeriodSeconds", 30))


def _spec_finalizers(res: Resource, obj: Obj) -> list[str]:
    """Namespaces keep their own finalizers in spec, which the namespace controller
    clears through /finalize once the namespace is empty."""
    if res.plural != "namespaces":
        return []
    return list(obj.get("spec", {}).get("finalizers") or [])


def _pending_finalizers(res: Resource, obj: Obj) -> bool:
    return bool(obj["metadata"].get("finalizers")) or bool(_spec_finalizers(res, obj))


def _awaits_kubelet(res: Resource, obj: Obj) -> bool:
    """A terminating pod on a node stays until its node agent deletes it with grace 0."""
    return (
        res.plural == "pods"
        and bool(obj.get("spec", {}).get("nodeName"))
        and obj["metadata"].get("deletionGracePeriodSeconds", 0) > 0
        and obj.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    )


def _same_but_version(a: Obj, b: Obj) -> bool:
    ma, mb = a["metadata"], b["metadata"]
    if {k: v for k, v in ma.items() if k not in ("resourceVersion", "managedFields")} != {
        k: v for k, v in mb.items() if k not in ("resourceVersion", "managedFields")
    }:
        return False
    return {k: v for k, v in a.items() if k != "metadata"} == {
        k: v for k, v in b.items() if k != "metadata"
    }
