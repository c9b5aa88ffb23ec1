"""`kubelite ctl get`: server-printed tables, or the objects as YAML, JSON or names."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from kubelite.api.registry import Resource
from kubelite.cli.ctl_common import CtlError, Obj, namespace_of, server_error, targets, type_name
from kubelite.client import Client, NotFound, resource_path

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PAGE_SIZE = 500
# kubectl's tabwriter: cells at least 6 wide, 3 spaces between columns.
_MIN_WIDTH, _PADDING = 6, 3


def dump(obj: Obj, output: str) -> None:
    """Print as kubectl does: 4-space JSON, or YAML with sorted keys."""
    if output == "json":
        print(json.dumps(obj, indent=4, ensure_ascii=False))
    else:
        print(yaml.safe_dump(obj, sort_keys=True, allow_unicode=True), end="")


def _with_type(res: Resource, obj: Obj) -> Obj:
    # List items come without apiVersion and kind; kubectl fills them in.
    return {"apiVersion": res.api_version, "kind": res.kind, **obj}


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).split("\n", 1)[0]


def format_table(table: Obj, *, wide: bool, namespace_column: bool,
                 name_prefix: str = "") -> list[str]:
    """The lines kubectl prints for a meta.k8s.io/v1 Table."""
    columns = [(i, c) for i, c in enumerate(table.get("columnDefinitions") or [])
               if wide or not c.get("priority")]
    header = [c["name"].upper() for _, c in columns]
    lines = [header]
    for row in table.get("rows") or []:
        cells = [_cell(row["cells"][i]) for i, _ in columns]
        for n, (_, column) in enumerate(columns):
            if column["name"] == "Name":
                cells[n] = name_prefix + cells[n]
        if namespace_column:
            meta = (row.get("object") or {}).get("metadata") or {}
            cells.insert(0, meta.get("namespace", ""))
        lines.append(cells)
    if namespace_column:
        header.insert(0, "NAMESPACE")
    widths = [max(_MIN_WIDTH, *(len(cell) + _PADDING for cell in col))
              for col in zip(*lines, strict=True)]
    return ["".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=False)) + line[-1]
            for line in lines]


async def _table(client: Client, res: Resource, ns: str | None, names: list[str],
                 args: argparse.Namespace) -> tuple[Obj, bool]:
    """One Table for a kind (its rows merged from per-name GETs or list pages); True if a
    named object was missing (reported on stderr, as kubectl goes on with the others)."""
    missing = False
    if names:
        merged: Obj = {}
        for name in names:
            try:
                one = await client.request(
                    "GET", resource_path(res, namespace=ns, name=name), accept=TABLE_ACCEPT)
            except NotFound as exc:
                print(server_error(exc), file=sys.stderr)
                missing = True
                continue
            merged = merged or {**one, "rows": []}
            merged["rows"].extend(one.get("rows") or [])
        return merged, missing
    params: dict[str, Any] = {"labelSelector": args.selector,
                              "fieldSelector": args.field_selector, "limit": PAGE_SIZE}
    table: Obj = {}
    while True:
        page = await client.request("GET", resource_path(res, namespace=ns), params=params,
                                    accept=TABLE_ACCEPT)
        table = table or {**page, "rows": []}
        table["rows"].extend(page.get("rows") or [])
        params["continue"] = (page.get("metadata") or {}).get("continue")
        if not params["continue"]:
            return table, missing


async def _objects(client: Client, res: Resource, ns: str | None, names: list[str],
                   args: argparse.Namespace) -> tuple[list[Obj], bool]:
    if not names:
        listed = await client.list_all(res, ns, label_selector=args.selector,
                                       field_selector=args.field_selector)
        return [_with_type(res, o) for o in listed.get("items") or []], False
    objs, missing = [], False
    for name in names:
        try:
            objs.append(_with_type(res, await client.get(res, name, ns)))
        except NotFound as exc:
            print(server_error(exc), file=sys.stderr)
            missing = True
    return objs, missing


def _nothing_found(ns: str | None) -> None:
    print(f"No resources found in {ns} namespace." if ns else "No resources found",
          file=sys.stderr)


async def cmd_get(client: Client, args: argparse.Namespace) -> int:
    groups = targets(args.target)
    if args.all_namespaces and any(names for _, names in groups):
        raise CtlError("error: a resource cannot be retrieved by name across all namespaces")
    namespaces = [namespace_of(args, res, client) for res, _ in groups]
    shown_ns = next((ns for ns in namespaces if ns), None)
    failed = False
    if args.output in ("yaml", "json", "name"):
        objs: list[tuple[Resource, Obj]] = []
        for (res, names), ns in zip(groups, namespaces, strict=True):
            found, missing = await _objects(client, res, ns, names, args)
            objs.extend((res, o) for o in found)
            failed |= missing
        if args.output == "name":
            for res, obj in objs:
                print(f"{type_name(res)}/{obj['metadata']['name']}")
            if not objs and not failed:
                _nothing_found(shown_ns)
        elif len(groups) == 1 and len(groups[0][1]) == 1:
            if objs:
                dump(objs[0][1], args.output)
        else:
            dump({"apiVersion": "v1", "items": [o for _, o in objs], "kind": "List",
                  "metadata": {"resourceVersion": ""}}, args.output)
        return 1 if failed else 0
    printed = 0
    for (res, names), ns in zip(groups, namespaces, strict=True):
        table, missing = await _table(client, res, ns, names, args)
        failed |= missing
        if not table.get("rows"):
            continue
        if printed:
            print()
        lines = format_table(table, wide=args.output == "wide",
                             namespace_column=res.namespaced and args.all_namespaces,
                             name_prefix=f"{type_name(res)}/" if len(groups) > 1 else "")
        print("\n".join(lines))
        printed += 1
    if not printed and not failed:
        _nothing_found(shown_ns)
    return 1 if failed else 0
