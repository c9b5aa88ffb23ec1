"""core/v1 Events as client-go's event recorder writes them.

`make_event` builds one Event; `EventRecorder` writes them best-effort and, like
client-go's EventCorrelator, folds an identical repeat (same source, object,
type, reason and message) into the existing Event by patching its count and
lastTimestamp instead of creating a new one.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from kubelite.api.clock import now_rfc3339 as _now
from kubelite.client.errors import ClientError, NotFound

if TYPE_CHECKING:
    from kubelite.client.api import Client

log = logging.getLogger(__name__)

# client-go keeps this many distinct events for deduplication (maxLruCacheEntries).
_CACHE_SIZE = 4096


def object_reference(obj: dict[str, Any], *, field_path: str | None = None) -> dict[str, Any]:
    """An ObjectReference to `obj` (kind, namespace, name, uid, apiVersion, resourceVersion)."""
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "apiVersion": obj.get("apiVersion"),
        "resourceVersion": meta.get("resourceVersion"),
        "fieldPath": field_path,
    }
    return {k: v for k, v in ref.items() if v}


def make_event(
    involved: dict[str, Any],
    *,
    reason: str,
    message: str,
    type: str = "Normal",
    component: str,
    host: str | None = None,
    field_path: str | None = None,
) -> dict[str, Any]:
    ref = object_reference(involved, field_path=field_path)
    now = _now()
    source = {"component": component}
    if host:
        source["host"] = host
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            # As the recorder names them: the object's name and the time in hex nanoseconds.
            "name": f"{ref.get('name', '')}.{time.time_ns():x}",
            # Events about cluster-scoped objects live in "default", as in Kubernetes.
            "namespace": ref.get("namespace") or "default",
        },
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "type": type,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host or "",
    }
    return event


class EventRecorder:
    """Records events for one component; failures are logged, never raised, since an
    event is a note for humans and must not fail the work it describes."""

    def __init__(self, client: Client, *, component: str, host: str | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host
        # identity of an event -> (namespace, name, count) of the Event holding it
        self._seen: OrderedDict[tuple[Any, ...], tuple[str, str, int]] = OrderedDict()

    async def record(
        self,
        involved: dict[str, Any],
        type: str,
        reason: str,
        message: str,
        *,
        field_path: str | None = None,
    ) -> None:
        from kubelite.client.api import CORE_EVENT

        ref = object_reference(involved, field_path=field_path)
        identity = (
            ref.get("kind"),
            ref.get("namespace"),
            ref.get("name"),
            ref.get("uid"),
            ref.get("apiVersion"),
            field_path,
            type,
            reason,
            message,
        )
        try:
            seen = self._seen.get(identity)
            if seen is not None:
                namespace, name, count = seen
                patch = {"count": count + 1, "lastTimestamp": _now(), "message": message}
                try:
                    await self.client.patch(
                        CORE_EVENT, name, patch, patch_type="strategic", namespace=namespace
                    )
                    self._remember(identity, (namespace, name, count + 1))
                    return
                except NotFound:
                    self._seen.pop(identity, None)
            event = make_event(
                involved,
                reason=reason,
                message=message,
                type=type,
                component=self.component,
                host=self.host,
                field_path=field_path,
            )
            created = await self.client.create(CORE_EVENT, event)
            meta = created.get("metadata") or event["metadata"]
            self._remember(identity, (meta["namespace"], meta["name"], 1))
        except ClientError as e:
            log.warning("could not record event %s %s on %s: %s", type, reason, ref, e)

    def _remember(self, identity: tuple[Any, ...], value: tuple[str, str, int]) -> None:
        self._seen[identity] = value
        self._seen.move_to_end(identity)
        while len(self._seen) > _CACHE_SIZE:
            self._seen.popitem(last=False)
