"""Value checks and field-error constructors shared by validation and defaulting.

Messages are Kubernetes' own (apimachinery `util/validation` and `field.Error`),
because kubectl users grep for them and tests of client tools compare them.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from fractions import Fraction
from typing import Any

from kubelite.api.errors import (
    FIELD_DUPLICATE,
    FIELD_FORBIDDEN,
    FIELD_INVALID,
    FIELD_NOT_SUPPORTED,
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    Cause,
)

# Strict-decoding failures are not field errors in Kubernetes (they are 400
# BadRequest, raised before validation); these reasons keep them apart.
FIELD_VALUE_UNKNOWN = "FieldValueUnknown"
FIELD_TYPE_INVALID = "FieldValueTypeInvalid"

# ---------------------------------------------------------------- formatting


def go_value(value: Any) -> str:
    """Render a value the way apimachinery's field.Error prints it (Go %q / %v / %#v)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "<nil>"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(value[k])}" for k in sorted(value))
        return f"map[string]string{{{inner}}}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def go_label_selector(selector: dict[str, Any] | None) -> str:
    """`v1.LabelSelector{...}` exactly as Kubernetes prints a selector in `field is immutable`."""
    selector = selector or {}
    labels = selector.get("matchLabels")
    exprs = selector.get("matchExpressions")
    ml = go_value(labels) if labels else "map[string]string(nil)"
    if exprs:
        items = []
        for e in exprs:
            values = e.get("values")
            vs = go_value(values) if values else "[]string(nil)"
            items.append(
                f'v1.LabelSelectorRequirement{{Key:{json.dumps(e.get("key", ""))}, '
                f'Operator:{json.dumps(e.get("operator", ""))}, Values:{vs}}}'
            )
        me = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    else:
        me = "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}"


class GoRepr:
    """A value pre-rendered in Go syntax, printed as is by `invalid`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _render(value: Any) -> str:
    return value.text if isinstance(value, GoRepr) else go_value(value)


# ---------------------------------------------------------------- iteration


def each(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(index, item) of the object items of a list; JSON nulls and junk are skipped."""
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]


def strs(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)]


# ---------------------------------------------------------------- causes


def required(path: str, detail: str = "") -> Cause:
    return Cause(FIELD_REQUIRED, f"Required value: {detail}" if detail else "Required value", path)


def invalid(path: str, value: Any, detail: str = "") -> Cause:
    msg = f"Invalid value: {_render(value)}"
    return Cause(FIELD_INVALID, f"{msg}: {detail}" if detail else msg, path)


def not_supported(path: str, value: Any, supported: list[str] | tuple[str, ...]) -> Cause:
    values = ", ".join(json.dumps(v) for v in supported)
    return Cause(
        FIELD_NOT_SUPPORTED, f"Unsupported value: {_render(value)}: supported values: {values}", path
    )


def duplicate(path: str, value: Any) -> Cause:
    return Cause(FIELD_DUPLICATE, f"Duplicate value: {_render(value)}", path)


def forbidden(path: str, detail: str) -> Cause:
    return Cause(FIELD_FORBIDDEN, f"Forbidden: {detail}", path)


def too_long(path: str, limit: int) -> Cause:
    return Cause(FIELD_TOO_LONG, f"Too long: must have at most {limit} bytes", path)


def immutable(path: str, value: Any) -> Cause:
    return invalid(path, value, "field is immutable")


def check_nonnegative(value: Any, path: str, out: list[Cause]) -> None:
    if isinstance(value, int) and value < 0:
        out.append(invalid(path, value, "must be greater than or equal to 0"))


def check_enum(value: Any, path: str, supported: tuple[str, ...], out: list[Cause]) -> None:
    if value is not None and value not in supported:
        out.append(not_supported(path, value, supported))


# ---------------------------------------------------------------- names


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    ex = ",  or ".join(f"'{e}'" for e in examples)
    return f"{msg} (e.g. {ex}, regex used for validation is '{fmt}')"


_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"

_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(_DNS1035_LABEL_FMT)
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_CONFIG_KEY = re.compile(_CONFIG_KEY_FMT)
_IANA_SVC_NAME = re.compile("[-a-z0-9]+")
_HAS_LETTER = re.compile("[a-z]")

DNS1123_LABEL_MSG = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character",
    _DNS1123_LABEL_FMT, "my-name", "123-abc",
)
DNS1123_SUBDOMAIN_MSG = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character",
    _DNS1123_SUBDOMAIN_FMT, "example.com",
)
DNS1035_LABEL_MSG = _regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character",
    _DNS1035_LABEL_FMT, "my-name", "abc-123",
)
_QUALIFIED_NAME_DETAIL = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
QUALIFIED_NAME_MSG = "name part " + _regex_error(
    _QUALIFIED_NAME_DETAIL,
    _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc",
)
LABEL_VALUE_MSG = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character",
    _LABEL_VALUE_FMT, "MyValue", "my_value", "12345",
)
CONFIG_KEY_MSG = _regex_error(
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
    _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name",
)


def max_len_msg(limit: int) -> str:
    return f"must be no more than {limit} characters"


def is_dns1123_label(value: str) -> list[str]:
    errs = [max_len_msg(63)] if len(value) > 63 else []
    if not _DNS1123_LABEL.fullmatch(value):
        errs.append(DNS1123_LABEL_MSG)
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_msg(253)] if len(value) > 253 else []
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(DNS1123_SUBDOMAIN_MSG)
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = [max_len_msg(63)] if len(value) > 63 else []
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(DNS1035_LABEL_MSG)
    return errs


def is_qualified_name(value: str) -> list[str]:
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_DETAIL, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_msg(63))
    if not _QUALIFIED_NAME.fullmatch(name):
        errs.append(QUALIFIED_NAME_MSG)
    return errs


def is_label_value(value: str) -> list[str]:
    errs = [max_len_msg(63)] if len(value) > 63 else []
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(LABEL_VALUE_MSG)
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs = [max_len_msg(253)] if len(value) > 253 else []
    if not _CONFIG_KEY.fullmatch(value):
        errs.append(CONFIG_KEY_MSG)
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_port_name(value: str) -> list[str]:
    """IANA_SVC_NAME (RFC 6335), used for container and target port names."""
    errs = []
    if len(value) > 15:
        errs.append(max_len_msg(15))
    if not _IANA_SVC_NAME.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_port_num(value: int) -> list[str]:
    return [] if 1 <= value <= 65535 else ["must be between 1 and 65535, inclusive"]


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"

_PERCENT = re.compile("[0-9]+%")
PERCENT_MSG = _regex_error(
    "a valid percent string must be a numeric string followed by an ending '%'",
    "[0-9]+%", "1%", "93%",
)


def int_or_percent(value: Any, path: str, out: list[Cause]) -> int | None:
    """Validate an IntOrString that must be >= 0 or a percent; return the percent or int."""
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            out.append(invalid(path, value, PERCENT_MSG))
            return None
        return int(value[:-1])
    if isinstance(value, int):
        check_nonnegative(value, path, out)
        return value
    return None


# ---------------------------------------------------------------- quantities

QUANTITY_MSG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)
_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def is_quantity(value: Any) -> bool:
    """Whether resource.Quantity's JSON decoding accepts the value (cheaper than parsing)."""
    if isinstance(value, str):
        return _QUANTITY.fullmatch(value.strip()) is not None
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_quantity(value: Any) -> Fraction | None:
    """The exact value of a resource.Quantity (string or JSON number), None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Fraction(value)
    return _parse_quantity_str(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=4096)
def _parse_quantity_str(value: str) -> Fraction | None:
    m = _QUANTITY.fullmatch(value.strip())
    if not m:
        return None
    number = Fraction(m.group(1))
    suffix = m.group(2)
    if not suffix:
        return number
    if suffix in _BIN:
        return number * _BIN[suffix]
    if suffix in _DEC:
        return number * Fraction(10) ** _DEC[suffix]
    return number * Fraction(10) ** int(suffix[1:])
