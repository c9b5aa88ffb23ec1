"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection.

A candidate reads the Lease; it may take it when nobody holds it, when it holds
it already, or when the holder has not renewed it for leaseDurationSeconds as
measured on the candidate's own clock (from when it last saw the record
change, so clocks need not agree). Writes are PUTs with the read
resourceVersion, so of two candidates racing for an expired lease one gets 409
and backs off. The leader renews every retry_period; if it cannot renew within
renew_deadline it stops leading. Cancelled while leading, it releases the lease
(empty holder) so another candidate takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kubelite.api import registry
from kubelite.client.errors import ClientError, NotFound

log = logging.getLogger(__name__)

LEASE = registry.lookup("coordination.k8s.io", "v1", "leases")

# client-go waits retry_period * (1 + rand * 1.2) between acquisition attempts.
_JITTER = 1.2


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: Any,
        *,
        name: str,
        namespace: str,
        identity: str,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period * _JITTER:
            raise ValueError("need lease_duration > renew_deadline > retry_period * 1.2")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.clock = clock
        self._observed: dict[str, Any] = {}
        self._observed_rv: str | None = None
        self._observed_at = 0.0
        self._reported_leader: str | None = None

    @property
    def leader(self) -> str | None:
        """The holder last seen in the lease (None or '' when free)."""
        return self._observed.get("holderIdentity") or None

    @property
    def is_leader(self) -> bool:
        return self.leader == self.identity

    async def run(self) -> None:
        """Acquire the lease, run on_started_leading while renewing it, and return once
        leadership is lost or the leading work ends (its exception propagates)."""
        await self._acquire()
        work = asyncio.create_task(self.on_started_leading(), name=f"leading {self.name}")
        renew = asyncio.create_task(self._renew_loop(), name=f"renewing {self.name}")
        lost = False
        try:
            await asyncio.wait((work, renew), return_when=asyncio.FIRST_COMPLETED)
            lost = renew.done()
            if lost:
                log.warning("%s: lost leadership of lease %s", self.identity, self.name)
            if work.done():
                work.result()
        finally:
            for task in (work, renew):
                task.cancel()
            # wait() rather than await: the work's own exception is already on its way out.
            await asyncio.wait((work, renew))
            # A lost lease is not ours to release: another may hold it already.
            if self.release_on_cancel and not lost and self.is_leader:
                await asyncio.shield(self.release())
            if self.on_stopped_leading is not None:
                self.on_stopped_leading()

    async def _acquire(self) -> None:
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(self.retry_period * (1 + random.random() * _JITTER))
        log.info("%s: acquired lease %s/%s", self.identity, self.namespace, self.name)

    async def _renew_loop(self) -> None:
        while True:
            deadline = self.clock() + self.renew_deadline
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self.try_acquire_or_renew()
                except TimeoutError:
                    return
                if renewed:
                    break
                if self.clock() + self.retry_period >= deadline:
                    return
                await asyncio.sleep(self.retry_period)
            await asyncio.sleep(self.retry_period)

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this candidate holds the lease afterwards."""
        now = _micro_time()
        try:
            lease = await self.client.get(LEASE, self.name, self.namespace)
        except NotFound:
            spec = self._spec(acquire_time=now, renew_time=now, transitions=0)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                created = await self.client.create(LEASE, body, self.namespace)
            except ClientError as e:
                log.debug("%s: creating lease %s failed: %s", self.identity, self.name, e)
                return False
            self._observe(created)
            return True
        except ClientError as e:
            log.warning("%s: reading lease %s failed: %s", self.identity, self.name, e)
            return False

        self._observe(lease)
        old = lease.get("spec") or {}
        holder = old.get("holderIdentity") or ""
        duration = old.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and self._observed_at + duration > self.clock():
            return False
        if holder == self.identity:
            spec = self._spec(
                acquire_time=old.get("acquireTime") or now,
                renew_time=now,
                transitions=old.get("leaseTransitions") or 0,
            )
        else:
            spec = self._spec(
                acquire_time=now, renew_time=now, transitions=(old.get("leaseTransitions") or 0) + 1
            )
        return await self._write(lease, spec)

    async def release(self) -> None:
        """Give the lease up: empty holder and a 1 s duration, so others take it at once."""
        try:
            lease = await self.client.get(LEASE, self.name, self.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = _micro_time()
            await self._write(
                lease,
                {
                    "holderIdentity": "",
                    "leaseDurationSeconds": 1,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": spec.get("leaseTransitions") or 0,
                },
            )
        except ClientError as e:
            log.warning("%s: releasing lease %s failed: %s", self.identity, self.name, e)

    def _spec(self, *, acquire_time: str, renew_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": renew_time,
            "leaseTransitions": transitions,
        }

    async def _write(self, lease: dict[str, Any], spec: dict[str, Any]) -> bool:
        body = {**lease, "spec": spec}
        try:
            written = await self.client.update(LEASE, body, self.namespace)
        except ClientError as e:
            log.debug("%s: updating lease %s failed: %s", self.identity, self.name, e)
            return False
        self._observe(written)
        return spec.get("holderIdentity") == self.identity

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        if spec != self._observed or rv != self._observed_rv:
            self._observed = dict(spec)
            self._observed_rv = rv
            self._observed_at = self.clock()
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            if self.on_new_leader is not None:
                self.on_new_leader(holder)
