"""`kubelite ctl describe`: an object's fields, conditions and events, laid out as kubectl's
generic describer does (a ConfigMap and a Secret as their own describers do)."""

from __future__ import annotations

import argparse
import base64
import re
import sys
from datetime import UTC, datetime
from typing import Any

from kubelite.api.registry import Resource
from kubelite.api.tables_base import since
from kubelite.cli.ctl_common import Obj, namespace_of, server_error, targets
from kubelite.client import Client, NotFound, find_resource

# (indent level, label, value); a None value is a heading line (no value column).
Line = tuple[int, str, str | None]
_ACRONYMS = {"API", "URL", "UID", "OSB", "GUID"}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# kubectl leaves it out: it repeats the object, a Secret's stringData included.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SKIPPED_META = ("name", "namespace", "labels", "annotations", "managedFields")


def smart_label(field: str) -> str:
    """`apiVersion` -> `API Version`, `creationTimestamp` -> `Creation Timestamp`; keys with
    other characters than letters and '-' (data keys, label keys) stay as they are."""
    if not field or any(not (c.isalpha() or c == "-") for c in field):
        return field
    return " ".join(w.upper() if w.upper() in _ACRONYMS else w[0].upper() + w[1:]
                    for w in _WORD.findall(field))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "<nil>" if value is None else str(value)


def _content(obj: Any, level: int) -> list[Line]:
    lines: list[Line] = []
    for key in sorted(obj):
        value = obj[key]
        if isinstance(value, dict):
            lines.append((level, f"{smart_label(key)}:", None))
            lines.extend(_content(value, level + 1))
        elif isinstance(value, list):
            lines.append((level, f"{smart_label(key)}:", None))
            for item in value:
                lines.extend(_content(item, level + 1) if isinstance(item, dict)
                             else [(level + 1, _scalar(item), None)])
        else:
            lines.append((level, f"{smart_label(key)}:", _scalar(value)))
    return lines


def _size(encoded: str) -> int:
    return len(base64.b64decode(encoded))


def _multiline(label: str, values: dict[str, str] | None) -> list[Line]:
    pairs = [f"{k}={v}" for k, v in sorted((values or {}).items())] or ["<none>"]
    return [(0, label, pairs[0]), *((0, "", p) for p in pairs[1:])]


def render(lines: list[Line]) -> str:
    """Align the value column within each run of labelled lines, as a tabwriter with
    2 spaces of padding does."""
    out: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(left) for left, _ in run), default=0) + 2
        out.extend(f"{left.ljust(width)}{right}" for left, right in run)
        run.clear()

    for level, label, value in lines:
        left = "  " * level + label
        if value is None:
            flush()
            out.append(left)
        else:
            run.append((left, value))
    flush()
    return "\n".join(out)


def table(level: int, header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell plus 2; the last column is not padded. The
    underline is at least 4 dashes wide, as kubectl writes `Age` over `----`."""
    all_rows = [header, ["-" * max(4, len(h)) for h in header], *rows]
    widths = [max(len(r[i]) for r in all_rows) + 2 for i in range(len(header) - 1)]
    return ["  " * level + "".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1]
            for r in all_rows]


def _conditions(conditions: list[Obj]) -> list[str]:
    rows = [[str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", ""))]
            for c in conditions]
    return ["Conditions:", *table(1, ["Type", "Status", "Reason"], rows)]


def events_section(events: list[Obj], now: datetime) -> list[str]:
    if not events:
        return ["Events:  <none>"]
    rows = []
    for ev in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        count = int((ev.get("series") or {}).get("count") or ev.get("count") or 1)
        first = ev.get("firstTimestamp") or ev.get("eventTime")
        age = since(first, now) if count <= 1 else (
            f"{since(ev.get('lastTimestamp') or first, now)} (x{count} over {since(first, now)})")
        source = ev.get("source") or {}
        origin = source.get("component") or ev.get("reportingComponent") or ""
        if source.get("host"):
            origin += f", {source['host']}"
        rows.append([ev.get("type", ""), ev.get("reason", ""), age, origin,
                     str(ev.get("message", "")).strip()])
    return ["Events:", *table(1, ["Type", "Reason", "Age", "From", "Message"], rows)]


def describe_lines(obj: Obj) -> list[str]:
    meta = obj.get("metadata") or {}
    head: list[Line] = [(0, "Name:", meta.get("name", ""))]
    if "namespace" in meta:
        head.append((0, "Namespace:", meta["namespace"]))
    head += _multiline("Labels:", meta.get("labels"))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != LAST_APPLIED}
    head += _multiline("Annotations:", annotations)
    kind = obj.get("kind")
    if kind == "ConfigMap":
        lines = [render(head), "", "Data", "===="]
        for key, value in sorted((obj.get("data") or {}).items()):
            lines += [f"{key}:", "----", str(value)]
        lines += ["", "BinaryData", "===="]
        lines += [f"{key}: {_size(value)} bytes"
                  for key, value in sorted((obj.get("binaryData") or {}).items())]
        return [*lines, ""]
    if kind == "Secret":
        sizes: list[Line] = [(0, f"{key}:", f"{_size(value)} bytes")
                             for key, value in sorted((obj.get("data") or {}).items())]
        return [render(head), "", render([(0, "Type:", obj.get("type", ""))]), "", "Data",
                "====", render(sizes), ""]
    rest = {k: v for k, v in obj.items() if k != "metadata"}
    rest["metadata"] = {k: v for k, v in meta.items() if k not in _SKIPPED_META}
    status = rest.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    if conditions:
        rest["status"] = {k: v for k, v in status.items() if k != "conditions"}
    lines = [render(head + _content(rest, 0))]
    return lines + (_conditions(conditions) if conditions else [])


async def cmd_describe(client: Client, args: argparse.Namespace) -> int:
    events_res: Resource = find_resource("events")
    failed = False
    described = 0
    for res, names in targets(args.target):
        ns = namespace_of(args, res, client)
        if names:
            objs = []
            for name in names:
                try:
                    objs.append(await client.get(res, name, ns))
                except NotFound as exc:
                    print(server_error(exc), file=sys.stderr)
                    failed = True
        else:
            objs = (await client.list_all(res, ns))["items"]
        for obj in objs:
            obj = {"apiVersion": res.api_version, "kind": res.kind, **obj}
            meta = obj["metadata"]
            events = await client.list(events_res, meta.get("namespace"),
                                       field_selector=f"involvedObject.uid={meta['uid']}")
            if described:
                print("\n")
            print("\n".join([*describe_lines(obj),
                             *events_section(events["items"], datetime.now(UTC))]))
            described += 1
    return 1 if failed else 0
