"""Label and field selectors, parsed once and matched cheaply per object.

Label selectors (apimachinery `labels`):

- `LabelSelector.parse(text)` reads the query-string syntax
  (`a=b,c!=d,e in (x,y),f notin (z),g,!h`, also `==`, `>` and `<`). The empty
  string selects everything.
- `LabelSelector.from_object(sel)` converts a metav1.LabelSelector
  (`LabelSelectorAsSelector`): **None selects nothing**, an empty selector (no
  matchLabels and no matchExpressions) selects everything. Controllers rely on
  this: a Deployment or PDB without a selector must adopt no pods.
- `LabelSelector.from_set(labels)` is `SelectorFromSet`, used for maps such as
  Service.spec.selector: an empty map selects everything (callers that must
  select nothing for an empty map, like the endpoints controller, check first).

Field selectors (apimachinery `fields`): `FieldSelector.parse(text,
resource_plural=...)` reads `a=b`, `a==b`, `a!=b` joined by commas (values may
escape `\\`, `,` and `=` with a backslash) and, when `resource_plural` is given,
checks every field against the paths the apiserver supports for that
resource, as the apiserver's field label conversion does. Without a plural no
field is rejected and values are read by plain dotted paths (client side use).

Bad input raises `APIError` 400 BadRequest with the apiserver's message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.api.errors import APIError, bad_request
from kubelite.api.selectors_fields import (
    SUPPORTED_FIELDS,
    FieldSelector,
    FieldTerm,
    field_value,
    supported_fields,
)
from kubelite.api.validation_values import go_value, is_label_value, is_qualified_name

# Operator spellings as in apimachinery's selection.Operator.
DOES_NOT_EXIST = "!"
EQUALS = "="
DOUBLE_EQUALS = "=="
IN = "in"
NOT_EQUALS = "!="
NOT_IN = "notin"
EXISTS = "exists"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_SELECTOR_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_EMPTY: dict[str, str] = {}

__all__ = [
    "SUPPORTED_FIELDS", "FieldSelector", "FieldTerm", "LabelSelector", "Requirement",
    "field_value", "format_label_selector", "format_labels", "new_requirement",
    "supported_fields",
]

LabelTest = Callable[[Mapping[str, str]], bool]


def _join_errors(messages: list[str]) -> str:
    """apimachinery's aggregate error text: duplicates dropped, several in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _invalid(path: str, value: str, detail: str) -> str:
    return f"{path}: Invalid value: {value}: {detail}"


def _go_strings(values: tuple[str, ...] | None) -> str:
    return "[]string(nil)" if values is None else go_value(list(values))


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `key op values` term; values are kept sorted as Kubernetes prints them."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        joined = ",".join(self.values)
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({joined})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{symbol}{joined}"

    def test(self) -> LabelTest:
        """A closure answering this requirement for one label map."""
        key, values = self.key, self.values
        op = self.operator
        if op in (EQUALS, DOUBLE_EQUALS, IN):
            if len(values) == 1:
                only = values[0]
                return lambda labels: labels.get(key) == only
            allowed = frozenset(values)
            return lambda labels: labels.get(key) in allowed
        if op in (NOT_EQUALS, NOT_IN):
            if len(values) == 1:
                only = values[0]
                return lambda labels: labels.get(key) != only
            denied = frozenset(values)
            return lambda labels: key not in labels or labels[key] not in denied
        if op == EXISTS:
            return lambda labels: key in labels
        if op == DOES_NOT_EXIST:
            return lambda labels: key not in labels
        bound = int(values[0])
        greater = op == GREATER_THAN

        def compare(labels: Mapping[str, str]) -> bool:
            value = labels.get(key)
            if value is None or not _INTEGER.fullmatch(value):
                return False
            return int(value) > bound if greater else int(value) < bound

        return compare


def new_requirement(key: str, operator: str, values: tuple[str, ...] | None) -> Requirement:
    """labels.NewRequirement: validate and build; errors carry apimachinery's field paths."""
    errs = [_invalid("key", go_value(key), "; ".join(m)) for m in [is_qualified_name(key)] if m]
    vals = values or ()
    if operator in (IN, NOT_IN):
        if not vals:
            errs.append(_invalid("values", _go_strings(values),
                                 "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(_invalid("values", _go_strings(values),
                                 "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(_invalid("values", _go_strings(values),
                                 "values set must be empty for exists and does not exist"))
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append(_invalid("values", _go_strings(values),
                                 "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(vals):
            if not _INTEGER.fullmatch(v):
                errs.append(_invalid(f"values[{i}]", go_value(v),
                                     "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        supported = ", ".join(f'"{o}"' for o in (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST))
        errs.append(f"operator: Unsupported value: {go_value(operator)}: "
                    f"supported values: {supported}")
    for i, v in enumerate(vals):
        msgs = is_label_value(v)
        if msgs:
            errs.append(_invalid(f"values[{i}][{key}]", go_value(v), "; ".join(msgs)))
    if errs:
        raise bad_request(_join_errors(errs))
    return Requirement(key, operator, tuple(sorted(set(vals))))


class LabelSelector:
    """An AND of requirements; immutable, with the per-requirement tests prebuilt."""

    __slots__ = ("requirements", "_nothing", "_tests")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(
            sorted(requirements, key=lambda r: r.key))
        self._nothing = nothing
        self._tests: tuple[LabelTest, ...] = tuple(r.test() for r in self.requirements)

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(nothing=True)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """The `labelSelector` query parameter; APIError 400 on bad syntax or names."""
        return cls(_Parser(text).parse())

    @classmethod
    def from_object(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """metav1.LabelSelector: None selects nothing, `{}` selects everything."""
        if selector is None:
            return cls.nothing()
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or ()
        reqs = [new_requirement(k, EQUALS, (v,)) for k, v in match_labels.items()]
        for expr in expressions:
            operator = expr.get("operator")
            op = _SELECTOR_OPERATORS.get(operator)
            if op is None:
                raise bad_request(f"{go_value(operator)} is not a valid label selector operator")
            values = expr.get("values")
            reqs.append(new_requirement(expr.get("key", ""), op,
                                        tuple(values) if values else None))
        return cls(reqs)

    @classmethod
    def from_set(cls, labels: Mapping[str, str] | None) -> LabelSelector:
        """Equality on every pair, unvalidated; an empty or missing map selects everything."""
        return cls(Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items())

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict (Kubernetes' Selector.Empty)."""
        return not self._nothing and not self.requirements

    @property
    def selects_nothing(self) -> bool:
        return self._nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        if labels is None:
            labels = _EMPTY
        for test in self._tests:
            if not test(labels):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "LabelSelector(<nothing>)" if self._nothing else f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return self._nothing == other._nothing and self.requirements == other.requirements

    def __hash__(self) -> int:
        return hash((self._nothing, self.requirements))


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: the selector's string, `<none>` when it is empty."""
    try:
        text = str(LabelSelector.from_object(selector))
    except APIError:
        return "<error>"
    return text or "<none>"


def format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: sorted `k=v` pairs, `<none>` for an empty map."""
    if not labels:
        return "<none>"
    return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))


# ---------------------------------------------------------------- label selector parser

# Token kinds of apimachinery's lexer.
_EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)
_TOKENS = {")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
           "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPEN}
_OPERATOR_TOKENS = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN,
                    _LT: LESS_THAN, _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}
_SPECIAL = frozenset("=!(),><")
_SPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n:
            items.append((_EOS, ""))
            return items
        if text[i] in _SPECIAL:
            # The longest operator wins; only "==" and "!=" have two characters.
            two = text[i:i + 2]
            lit = two if two in ("==", "!=") else text[i]
            items.append((_TOKENS[lit], lit))
            i += len(lit)
            continue
        start = i
        while i < n and text[i] not in _SPECIAL and text[i] not in _SPACE:
            i += 1
        word = text[start:i]
        items.append((_TOKENS.get(word, _ID), word))


class _ParseError(Exception):
    pass


class _Parser:
    """A port of apimachinery's recursive-descent parser, messages included."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _peek(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        # In value position the keywords `in` and `notin` are ordinary identifiers.
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def _next(self, values: bool = True) -> tuple[int, str]:
        item = self._peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._peek()
            if tok in (_ID, _NOT):
                try:
                    reqs.append(self._requirement())
                except _ParseError as e:
                    raise bad_request(f"unable to parse requirement: {e}") from None
                except APIError as e:
                    raise bad_request(f"unable to parse requirement: {e.message}") from None
                tok, lit = self._next()
                if tok == _EOS:
                    return reqs
                if tok != _COMMA:
                    raise bad_request(f"found '{lit}', expected: ',' or 'end of string'")
                tok2, lit2 = self._peek()
                if tok2 not in (_ID, _NOT):
                    raise bad_request(f"found '{lit2}', expected: identifier after ','")
            elif tok == _EOS:
                return reqs
            else:
                raise bad_request(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def _requirement(self) -> Requirement:
        key, op = self._key_and_operator()
        if op in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, op, ())
        op = self._operator()
        values = self._values() if op in (IN, NOT_IN) else self._exact_value()
        return new_requirement(key, op, tuple(sorted(values)))

    def _key_and_operator(self) -> tuple[str, str]:
        op = ""
        tok, lit = self._next()
        if tok == _NOT:
            op = DOES_NOT_EXIST
            tok, lit = self._next()
        if tok != _ID:
            raise _ParseError(f"found '{lit}', expected: identifier")
        msgs = is_qualified_name(lit)
        if msgs:
            raise _ParseError(_invalid("<nil>", go_value(lit), "; ".join(msgs)))
        if self._peek()[0] in (_EOS, _COMMA) and op != DOES_NOT_EXIST:
            op = EXISTS
        return lit, op

    def _operator(self) -> str:
        tok, lit = self._next(values=False)
        op = _OPERATOR_TOKENS.get(tok)
        if op is None:
            raise _ParseError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return op

    def _values(self) -> set[str]:
        tok, lit = self._next()
        if tok != _OPEN:
            raise _ParseError(f"found '{lit}' expected: '('")
        tok, lit = self._peek()
        if tok in (_ID, _COMMA):
            found = self._identifiers()
            self._next()  # the ')' that ended the list
            return found
        if tok == _CLOSE:
            self._next()
            return {""}
        raise _ParseError(f"found '{lit}', expected: ',', ')' or identifier")

    def _identifiers(self) -> set[str]:
        found: set[str] = set()
        while True:
            tok, lit = self._next()
            if tok == _ID:
                found.add(lit)
                tok2, lit2 = self._peek()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return found
                raise _ParseError(f"found '{lit2}', expected: ',' or ')'")
            if tok != _COMMA:
                raise _ParseError(f"found '{lit}', expected: ',', or identifier")
            # Empty values: "(,a)", "(a,)" and "(a,,b)" all include "".
            if not found:
                found.add("")
            tok2 = self._peek()[0]
            if tok2 == _CLOSE:
                found.add("")
                return found
            if tok2 == _COMMA:
                found.add("")

    def _exact_value(self) -> set[str]:
        if self._peek()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self._next()
        if tok == _ID:
            return {lit}
        raise _ParseError(f"found '{lit}', expected: identifier")

