"""The controller base: informers feed keys into a rate-limited work queue, workers sync keys.

    class ReplicaSetController(Controller):
        name = "replicaset-controller"

        def __init__(self, factory: InformerFactory) -> None:
            super().__init__(workers=5)
            self.rs = self.watch(factory.informer(RS))
            self.pods = self.watch_owned(factory.informer(POD), owner=self.rs,
                                         owner_kind="ReplicaSet", expectations=self.exp)

        async def sync(self, key: str) -> None: ...

Handlers only enqueue keys (`namespace/name`). `sync(key)` reads the caches,
takes one step and raises to be retried: the key is then requeued with the
queue's per-key exponential backoff; success forgets the key's failures.
Objects from the caches are shared: copy before changing them.

`Expectations` and `slow_start_batch` are the tools Kubernetes' ReplicaSet
controller uses so that a cache lagging behind its own writes cannot make it
create or delete twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubelite.client.informer import Informer, Obj, object_key
from kubelite.client.workqueue import RateLimiter, ShutDown, WorkQueue
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

# client-go's ExpectationsTimeout: a controller whose expected events never came
# (a lost watch event, a failed create it did not notice) resyncs after this.
EXPECTATIONS_TTL = 300.0


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference with controller: true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _being_deleted(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


class Controller:
    name: str = "controller"

    def __init__(
        self,
        *,
        workers: int = 1,
        rate_limiter: RateLimiter | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.queue = WorkQueue(rate_limiter=rate_limiter)
        self.workers = workers
        # None retries forever (with backoff); a number drops a key after that many
        # consecutive failures, so that bad input cannot keep a worker busy.
        self.max_retries = max_retries
        self.informers: list[Informer] = []
        self._stopping = False

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    # -- wiring informers to the queue -------------------------------------------

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    def watch(
        self, informer: Informer, *, key_fn: Callable[[Obj], str | None] = object_key
    ) -> Informer:
        """Enqueue `key_fn(obj)` (None skips) for every add, update and delete."""

        def put(obj: Obj) -> None:
            key = key_fn(obj)
            if key is not None:
                self.queue.add(key)

        informer.add_handlers(on_add=put, on_update=lambda old, new: put(new), on_delete=put)
        self._track(informer)
        return informer

    def watch_owned(
        self,
        informer: Informer,
        *,
        owner: Informer,
        owner_kind: str,
        expectations: Expectations | None = None,
        on_orphan: Callable[[Obj], Iterable[str]] | None = None,
    ) -> Informer:
        """Enqueue the owner (through the controller ownerReference, uid checked) of
        every owned object that changes; orphans go to `on_orphan` (adoption).
        With `expectations`, creations and deletions seen are confirmed there."""

        def owner_key(obj: Obj) -> str | None:
            ref = controller_ref(obj)
            if ref is None:
                return None
            return self.resolve_controller_ref(obj, ref, owner, owner_kind)

        def orphan(obj: Obj) -> None:
            if on_orphan is not None:
                for key in on_orphan(obj):
                    self.queue.add(key)

        def on_add(obj: Obj) -> None:
            if controller_ref(obj) is None:
                orphan(obj)
                return
            key = owner_key(obj)
            if key is None:
                return
            if expectations is not None:
                if _being_deleted(obj):
                    expectations.deletion_observed(key, object_key(obj))
                else:
                    expectations.creation_observed(key)
            self.queue.add(key)

        def on_update(old: Obj, new: Obj) -> None:
            old_ref, new_ref = controller_ref(old), controller_ref(new)
            if old_ref != new_ref and old_ref is not None:
                old_key = self.resolve_controller_ref(old, old_ref, owner, owner_kind)
                if old_key is not None:
                    self.queue.add(old_key)
            if new_ref is None:
                orphan(new)
                return
            key = self.resolve_controller_ref(new, new_ref, owner, owner_kind)
            if key is None:
                return
            if expectations is not None and _being_deleted(new) and not _being_deleted(old):
                expectations.deletion_observed(key, object_key(new))
            self.queue.add(key)

        def on_delete(obj: Obj) -> None:
            key = owner_key(obj)
            if key is None:
                return
            if expectations is not None:
                expectations.deletion_observed(key, object_key(obj))
            self.queue.add(key)

        informer.add_handlers(on_add=on_add, on_update=on_update, on_delete=on_delete)
        self._track(informer)
        return informer

    @staticmethod
    def resolve_controller_ref(
        obj: Obj, ref: dict[str, Any], owner: Informer, owner_kind: str
    ) -> str | None:
        """The owner's key if `ref` names an object of `owner_kind` in `owner`'s cache with
        the same uid; None otherwise (a different kind, gone, or a new object of that name)."""
        if ref.get("kind") != owner_kind:
            return None
        ns = (obj.get("metadata") or {}).get("namespace")
        key = f"{ns}/{ref.get('name')}" if ns and owner.res.namespaced else str(ref.get("name"))
        found = owner.get(key)
        if found is None or (found.get("metadata") or {}).get("uid") != ref.get("uid"):
            return None
        return key

    def _track(self, informer: Informer) -> None:
        if informer not in self.informers:
            self.informers.append(informer)

    # -- lifecycle --------------------------------------------------------------

    async def run(self) -> None:
        """Start the informers (shared ones are started once), wait for their caches,
        then run the workers until stop() or cancellation."""
        self._stopping = False
        for informer in self.informers:
            informer.start()
        await asyncio.gather(*(i.has_synced.wait() for i in self.informers))
        log.info("%s: caches synced, starting %d workers", self.name, self.workers)
        tasks = [
            asyncio.create_task(self._worker(), name=f"{self.name} worker {n}")
            for n in range(self.workers)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancelled(*tasks)

    def stop(self) -> None:
        """Workers finish the key in hand and exit; run() then returns."""
        self._stopping = True
        self.queue.shutdown()

    async def _worker(self) -> None:
        while not self._stopping:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except Exception:
                self._failed(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    def _failed(self, key: str) -> None:
        retries = self.queue.num_requeues(key)
        if self.max_retries is not None and retries >= self.max_retries:
            log.exception("%s: dropping %r after %d retries", self.name, key, retries)
            self.queue.forget(key)
            return
        log.exception("%s: sync of %r failed; requeued", self.name, key)
        self.queue.add_rate_limited(key)


@dataclass
class _Expected:
    adds: int
    deletes: set[str] = field(default_factory=set)
    deadline: float = 0.0


class Expectations:
    """Creations and deletions a controller announced for a key and has not yet seen
    in its informer. Deletions are tracked by the deleted objects' keys, so the
    same deletion observed twice (update with deletionTimestamp, then delete)
    counts once, as client-go's UIDTrackingControllerExpectations."""

    def __init__(
        self, *, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._records: dict[str, _Expected] = {}

    def expect_creations(self, key: str, count: int) -> None:
        self._records[key] = _Expected(adds=count, deadline=self.clock() + self.ttl)

    def expect_deletions(self, key: str, deleted_keys: Iterable[str]) -> None:
        self._records[key] = _Expected(
            adds=0, deletes=set(deleted_keys), deadline=self.clock() + self.ttl
        )

    def creation_observed(self, key: str) -> None:
        record = self._records.get(key)
        if record is not None and record.adds > 0:
            record.adds -= 1

    def lower_creations(self, key: str, count: int) -> None:
        """Forget `count` creations that were announced but never sent."""
        record = self._records.get(key)
        if record is not None:
            record.adds = max(0, record.adds - count)

    def deletion_observed(self, key: str, deleted_key: str) -> None:
        record = self._records.get(key)
        if record is not None:
            record.deletes.discard(deleted_key)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected."""
        record = self._records.get(key)
        return (record.adds, len(record.deletes)) if record else (0, 0)

    def satisfied(self, key: str) -> bool:
        """True when the controller may trust its cache for `key` and act again."""
        record = self._records.get(key)
        if record is None:
            return True
        if record.adds <= 0 and not record.deletes:
            return True
        if self.clock() >= record.deadline:
            log.info("expectations for %r expired with %s pending", key, self.pending(key))
            return True
        return False

    def delete(self, key: str) -> None:
        """Drop the record, when the owner itself is deleted."""
        self._records.pop(key, None)


async def slow_start_batch(
    count: int, initial: int, fn: Callable[[], Awaitable[Any]]
) -> tuple[int, BaseException | None]:
    """Call `fn` `count` times in concurrent batches of initial, 2*initial, 4*initial, ...;
    stop after the first batch with an error. Returns (successes, first error), so a
    quota or validation failure costs one call rather than `count`."""
    successes = 0
    remaining = count
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for err in errors:
            if isinstance(err, asyncio.CancelledError):
                raise err
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None
