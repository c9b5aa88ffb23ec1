"""The pieces every kind's Table printer shares: columns, the printer registry,
ages (`human_duration`) and small formatters.

Each kind registers one function with `@printer(plural, *columns)`; the
function returns the row's cells in column order, always including the
priority 1 (`-o wide`) cells, because the apiserver renders tables wide and
kubectl hides those columns itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubelite.api import schemas

Obj = Mapping[str, Any]
Cells = list[Any]

_META_DEFS = "io.k8s.apimachinery.pkg.apis.meta.v1."
_API_DEFS = "io.k8s.api."


@functools.cache
def _schema_doc(definition: str, field: str) -> str:
    prefix = _META_DEFS if definition.startswith("ObjectMeta") else _API_DEFS
    schema = schemas.definitions().get(prefix + definition) or {}
    return ((schema.get("properties") or {}).get(field) or {}).get("description", "")


@dataclass(frozen=True, slots=True)
class Column:
    """A TableColumnDefinition. `doc` is either the description itself or a
    (definition, field) pair whose OpenAPI description Kubernetes uses (its
    SwaggerDoc), e.g. ("core.v1.PodStatus", "podIP")."""

    name: str
    type: str = "string"
    doc: str | tuple[str, str] = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict[str, Any]:
        doc = self.doc if isinstance(self.doc, str) else _schema_doc(*self.doc)
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": doc, "priority": self.priority}


NAME = Column("Name", format="name", doc=("ObjectMeta", "name"))
AGE = Column("Age", doc=("ObjectMeta", "creationTimestamp"))
CONTAINERS = Column("Containers", doc="Names of each container in the template.", priority=1)
IMAGES = Column("Images", doc="Images referenced by each container in the template.", priority=1)


def wide(name: str, doc: str | tuple[str, str] = "", type: str = "string") -> Column:
    return Column(name, type, doc, priority=1)


CellsFn = Callable[[Obj, datetime], Cells]
ConditionsFn = Callable[[Obj], list[dict[str, str]] | None]


@dataclass(frozen=True)
class Printer:
    """One kind's columns and cells (no slots: the definitions are cached on it)."""

    columns: tuple[Column, ...]
    cells: CellsFn
    conditions: ConditionsFn | None = None

    @functools.cached_property
    def column_definitions(self) -> list[dict[str, Any]]:
        return [c.definition() for c in self.columns]


PRINTERS: dict[str, Printer] = {}


def printer(plural: str, *columns: Column,
            conditions: ConditionsFn | None = None) -> Callable[[CellsFn], CellsFn]:
    """Register the cells function of one resource (by plural) with its columns."""

    def register(fn: CellsFn) -> CellsFn:
        PRINTERS[plural] = Printer(columns, fn, conditions)
        return fn

    return register


# ---------------------------------------------------------------- time


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: about two significant figures."""
    if seconds <= -2:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{int(seconds)}s"
    minutes = int(seconds // 60)
    if minutes < 10:
        secs = int(seconds) % 60
        return f"{minutes}m" if secs == 0 else f"{minutes}m{secs}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = int(seconds // 3600)
    if hours < 8:
        mins = minutes % 60
        return f"{hours}h" if mins == 0 else f"{hours}h{mins}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years, days = hours // 24 // 365, hours // 24 % 365
    if hours < 24 * 365 * 8 and days:
        return f"{years}y{days}d"
    return f"{years}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 Time or MicroTime; None when missing or unreadable (Go's zero time)."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def since(value: Any, now: datetime) -> str:
    """translateTimestampSince: the age of a timestamp, `<unknown>` when unset."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


def age(obj: Obj, now: datetime) -> str:
    return since(obj.get("metadata", {}).get("creationTimestamp"), now)


# ---------------------------------------------------------------- formatters


def meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def name(obj: Obj) -> str:
    return meta(obj).get("name", "")


def containers_and_images(pod_spec: Mapping[str, Any] | None) -> tuple[str, str]:
    """layoutContainerCells: container names and images, comma separated."""
    containers = (pod_spec or {}).get("containers") or ()
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def template_spec(obj: Obj) -> Mapping[str, Any]:
    return (spec(obj).get("template") or {}).get("spec") or {}


def condition_true(conditions: Any, type_: str) -> bool:
    """The first condition of this type is True (hasJobCondition and friends)."""
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond.get("status") == "True"
    return False


def more_list(items: list[str], limit: int = 3, *, empty: str = "<unset>") -> str:
    """listWithMoreString: the first `limit` items and `+ N more...`."""
    shown = ",".join(items[:limit])
    if len(items) > limit:
        return f"{shown} + {len(items) - limit} more..."
    return shown or empty


def quantity(value: Any) -> str:
    """A resource.Quantity as stored (already canonical on the wire); Go prints an unset one as 0."""
    return str(value) if value not in (None, "") else "0"
