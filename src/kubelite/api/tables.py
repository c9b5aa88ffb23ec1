"""`meta.k8s.io/v1` Tables: what `kubectl get` asks for with
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.

The server renders every column, priority 1 (`-o wide`) ones included, as the
apiserver does; kubectl decides which to show. Kinds without a printer get
NAME and AGE, like custom resources without printer columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubelite.api import tables_core, tables_workloads  # noqa: F401  (importing registers)
from kubelite.api.errors import bad_request
from kubelite.api.tables_base import (
    NAME,
    PRINTERS,
    Cells,
    Column,
    Obj,
    Printer,
    age,
    human_duration,
)
from kubelite.api.tables_core import pod_summary

__all__ = ["INCLUDE_OBJECT", "PRINTERS", "human_duration", "pod_summary", "printer_for",
           "to_table"]

INCLUDE_OBJECT = ("Metadata", "Object", "None")


def _default_cells(obj: Obj, now: datetime) -> Cells:
    return [obj.get("metadata", {}).get("name", ""), age(obj, now)]


_DEFAULT = Printer((NAME, Column("Age", "date", ("ObjectMeta", "creationTimestamp"))),
                   _default_cells)


def printer_for(plural: str) -> Printer:
    return PRINTERS.get(plural, _DEFAULT)


def _row_object(obj: Obj, include: str) -> Any:
    if include == "Object":
        return obj
    if include == "None":
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def to_table(
    plural: str,
    objects: Iterable[Obj],
    *,
    include_object: str = "Metadata",
    now: datetime | None = None,
    list_meta: Mapping[str, Any] | None = None,
    with_columns: bool = True,
) -> dict[str, Any]:
    """A Table of `objects` of resource `plural`.

    `include_object` is the `includeObject` query parameter ("" means
    Metadata); `list_meta` the list's metadata (resourceVersion, continue),
    else a single object's resourceVersion is used as the apiserver does for
    get and watch. `with_columns=False` leaves out the column definitions, as
    for every watch event after the first. The returned column definitions
    are shared between calls: serialize, do not modify.
    """
    include = include_object or "Metadata"
    if include not in INCLUDE_OBJECT:
        raise bad_request(f"unrecognized includeObject value: {json.dumps(include_object)}")
    when = now or datetime.now(UTC)
    chosen = printer_for(plural)
    cells, conditions = chosen.cells, chosen.conditions
    rows: list[dict[str, Any]] = []
    items = list(objects)
    for obj in items:
        row: dict[str, Any] = {"cells": cells(obj, when)}
        found = conditions(obj) if conditions is not None else None
        if found:
            row["conditions"] = found
        row["object"] = _row_object(obj, include)
        rows.append(row)
    if list_meta is not None:
        metadata = dict(list_meta)
    elif len(items) == 1 and items[0].get("metadata", {}).get("resourceVersion"):
        metadata = {"resourceVersion": items[0]["metadata"]["resourceVersion"]}
    else:
        metadata = {}
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        # Go marshals the absent definitions of a headerless table as null.
        "columnDefinitions": chosen.column_definitions if with_columns else None,
        "rows": rows,
    }
