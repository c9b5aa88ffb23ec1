"""Label and field selectors: parsing, matching and the apiserver's error messages."""

from __future__ import annotations

import pytest

from kubelite.api.errors import APIError
from kubelite.api.selectors import (
    FieldSelector,
    LabelSelector,
    field_value,
    format_label_selector,
    format_labels,
    supported_fields,
)

QUALIFIED = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
             "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
             "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, "
               "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
               "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
               "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


# ---------------------------------------------------------------- label selectors

MATCH_CASES = [
    # (selector, labels, matches)
    ("", {}, True),
    ("", None, True),
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a=b", None, False),
    ("a==b", {"a": "b", "x": "y"}, True),
    ("a!=b", {}, True),
    ("a!=b", {"a": "b"}, False),
    ("a!=b", {"a": "c"}, True),
    ("e in (x,y)", {"e": "y"}, True),
    ("e in (x,y)", {"e": "z"}, False),
    ("e in (x,y)", {}, False),
    ("e in (x)", {"e": "x"}, True),
    ("f notin (z)", {}, True),
    ("f notin (z,w)", {"f": "w"}, False),
    ("f notin (z,w)", {"f": "q"}, True),
    ("g", {"g": ""}, True),
    ("g", {}, False),
    ("!h", {}, True),
    ("!h", {"h": "1"}, False),
    ("a=", {"a": ""}, True),
    ("a=", {}, False),
    ("x in (a,)", {"x": ""}, True),
    ("x notin ()", {"x": ""}, False),
    ("a in (in)", {"a": "in"}, True),
    ("n>5", {"n": "6"}, True),
    ("n>5", {"n": "5"}, False),
    ("n<5", {"n": "-1"}, True),
    ("n<5", {"n": "abc"}, False),
    ("n<5", {}, False),
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", {"a": "b", "e": "x", "g": ""}, True),
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", {"a": "b", "e": "x", "g": "", "h": ""}, False),
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", {"a": "b", "c": "d", "e": "x", "g": ""}, False),
    ("  a = b ,  g  ", {"a": "b", "g": "1"}, True),
    ("example.com/tier=web", {"example.com/tier": "web"}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCH_CASES,
                         ids=[f"{c[0] or 'empty'}|{c[1]}" for c in MATCH_CASES])
def test_label_selector_matches(text: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert LabelSelector.parse(text).matches(labels) is expected


@pytest.mark.parametrize(("text", "canonical"), [
    ("b=1,a=2", "a=2,b=1"),
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("a==b", "a==b"),
    ("!h,g", "g,!h"),
    ("n>5,m<2", "m<2,n>5"),
    ("e in (y,x,y)", "e in (x,y)"),
], ids=["sorted-by-key", "set-values-sorted", "double-equals-kept", "exists-forms",
        "gt-lt", "duplicate-values"])
def test_label_selector_string_is_kubernetes_canonical(text: str, canonical: str) -> None:
    assert str(LabelSelector.parse(text)) == canonical


LABEL_ERRORS = [
    ("app:monolith",
     f'unable to parse requirement: <nil>: Invalid value: "app:monolith": {QUALIFIED}'),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a=b,", "found '', expected: identifier after ','"),
    ("a=b,,c", "found ',', expected: identifier after ','"),
    ("(a)", "found '(', expected: !, identifier, or 'end of string'"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("a=b:c", f'unable to parse requirement: values[0][a]: Invalid value: "b:c": {LABEL_VALUE}'),
    ("x<1a", 'unable to parse requirement: values[0]: Invalid value: "1a": '
             "for 'Gt', 'Lt' operators, the value must be an integer"),
]


@pytest.mark.parametrize(("text", "message"), LABEL_ERRORS, ids=[c[0] for c in LABEL_ERRORS])
def test_label_selector_syntax_errors_are_bad_requests(text: str, message: str) -> None:
    with pytest.raises(APIError) as info:
        LabelSelector.parse(text)
    assert (info.value.code, info.value.reason, info.value.message) == (
        400, "BadRequest", message)


def test_label_selector_from_object_nil_selects_nothing_and_empty_everything() -> None:
    nothing = LabelSelector.from_object(None)
    everything = LabelSelector.from_object({})
    assert not nothing.matches({}) and not nothing.matches({"a": "b"})
    assert not nothing.empty and nothing.selects_nothing
    assert everything.matches({}) and everything.matches({"a": "b"}) and everything.empty
    assert LabelSelector.from_object({"matchLabels": {}, "matchExpressions": []}).empty


def test_label_selector_from_object_combines_labels_and_expressions() -> None:
    sel = LabelSelector.from_object({
        "matchLabels": {"b": "1", "a": "2"},
        "matchExpressions": [
            {"key": "c", "operator": "In", "values": ["z", "y"]},
            {"key": "d", "operator": "DoesNotExist"},
            {"key": "e", "operator": "Exists"},
            {"key": "f", "operator": "NotIn", "values": ["x"]},
        ],
    })
    assert str(sel) == "a=2,b=1,c in (y,z),!d,e,f notin (x)"
    assert sel.matches({"a": "2", "b": "1", "c": "y", "e": ""})
    assert not sel.matches({"a": "2", "b": "1", "c": "y", "e": "", "f": "x"})
    assert not sel.matches({"a": "2", "b": "1", "c": "y", "e": "", "d": "1"})
    assert sel == LabelSelector.parse("a=2,b=1,c in (y,z),!d,e,f notin (x)")


@pytest.mark.parametrize(("selector", "message"), [
    ({"matchExpressions": [{"key": "c", "operator": "In"}]},
     "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be "
     "empty"),
    ({"matchExpressions": [{"key": "c", "operator": "Exists", "values": ["a"]}]},
     'values: Invalid value: []string{"a"}: values set must be empty for exists and does not '
     "exist"),
    ({"matchExpressions": [{"key": "c", "operator": "Foo"}]},
     '"Foo" is not a valid label selector operator'),
    ({"matchLabels": {"a b": "c"}}, f'key: Invalid value: "a b": {QUALIFIED}'),
], ids=["in-without-values", "exists-with-values", "unknown-operator", "bad-key"])
def test_label_selector_from_object_errors(selector: dict, message: str) -> None:
    with pytest.raises(APIError) as info:
        LabelSelector.from_object(selector)
    assert info.value.message == message


def test_label_selector_from_set_and_formatting() -> None:
    assert LabelSelector.from_set({"app": "web"}).matches({"app": "web", "x": "y"})
    assert LabelSelector.from_set({}).matches({"any": "thing"})
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels(None) == "<none>"
    assert format_label_selector({"matchLabels": {"app": "web"}}) == "app=web"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({"matchExpressions": [{"key": "a", "operator": "X"}]}) \
        == "<error>"


# ---------------------------------------------------------------- field selectors

POD = {
    "metadata": {"name": "web-0", "namespace": "default"},
    "spec": {"nodeName": "node-1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
             "serviceAccountName": "default"},
    "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]},
}
EVENT = {
    "metadata": {"name": "web-0.17a", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default", "uid": "u-1"},
    "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"},
    "reportingComponent": "default-scheduler",
}

FIELD_CASES = [
    # (plural, selector, object, matches)
    ("pods", "metadata.name=web-0", POD, True),
    ("pods", "metadata.name==web-0", POD, True),
    ("pods", "metadata.name!=web-0", POD, False),
    ("pods", "metadata.namespace=default,status.phase=Running", POD, True),
    ("pods", "spec.nodeName=", POD, False),
    ("pods", "spec.nodeName=", {"metadata": {"name": "p"}}, True),
    ("pods", "spec.hostNetwork=false", POD, True),
    ("pods", "spec.hostNetwork=true", {**POD, "spec": {"hostNetwork": True}}, True),
    ("pods", "status.podIP=10.244.0.5", POD, True),
    ("pods", "status.phase!=Succeeded,status.phase!=Failed", POD, True),
    ("pods", "spec.host=node-1", POD, True),
    ("events", "involvedObject.name=web-0,involvedObject.uid=u-1,involvedObject.kind=Pod",
     EVENT, True),
    ("events", "source=default-scheduler", EVENT, True),
    ("events", "reportingComponent=default-scheduler,type=Warning", EVENT, False),
    ("secrets", "type=Opaque", {"metadata": {"name": "s"}, "type": "Opaque"}, True),
    ("nodes", "spec.unschedulable=false", {"metadata": {"name": "n"}}, True),
    ("nodes", "spec.unschedulable=true", {"metadata": {"name": "n"},
                                           "spec": {"unschedulable": True}}, True),
    ("namespaces", "status.phase=Active", {"metadata": {"name": "a"},
                                           "status": {"phase": "Active"}}, True),
    ("replicasets", "status.replicas=0", {"metadata": {"name": "r"}}, True),
    ("jobs", "status.successful=2", {"metadata": {"name": "j"}, "status": {"succeeded": 2}}, True),
    ("configmaps", "metadata.name=a\\,b", {"metadata": {"name": "a,b"}}, True),
    ("configmaps", "metadata.name=a\\=b\\\\", {"metadata": {"name": "a=b\\"}}, True),
    ("configmaps", "", {"metadata": {"name": "x"}}, True),
]


@pytest.mark.parametrize(("plural", "text", "obj", "expected"), FIELD_CASES,
                         ids=[f"{c[0]}:{c[1] or 'empty'}" for c in FIELD_CASES])
def test_field_selector_matches(plural: str, text: str, obj: dict, expected: bool) -> None:
    assert FieldSelector.parse(text, resource_plural=plural).matches(obj) is expected


FIELD_ERRORS = [
    ("pods", "spec.foo=1", "field label not supported: spec.foo"),
    ("nodes", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("configmaps", "data.x=1",
     '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("pods", "metadata.name", "invalid selector: 'metadata.name'; can't understand "
                              "'metadata.name'"),
    ("pods", "metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    ("pods", "metadata.name=a\\q", "invalid field selector: invalid escape sequence: \\q"),
    ("pods", "metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
]


@pytest.mark.parametrize(("plural", "text", "message"), FIELD_ERRORS,
                         ids=[f"{c[0]}:{c[1]}" for c in FIELD_ERRORS])
def test_field_selector_errors_are_bad_requests(plural: str, text: str, message: str) -> None:
    with pytest.raises(APIError) as info:
        FieldSelector.parse(text, resource_plural=plural)
    assert (info.value.code, info.value.message) == (400, message)


def test_field_selector_without_plural_reads_any_path() -> None:
    sel = FieldSelector.parse("spec.template.spec.nodeName=n,metadata.name!=x")
    assert sel.matches({"metadata": {"name": "y"},
                        "spec": {"template": {"spec": {"nodeName": "n"}}}})
    assert str(sel) == "metadata.name!=x,spec.template.spec.nodeName=n"
    assert sel.requires_exact_match("spec.template.spec.nodeName") == "n"
    assert sel.requires_exact_match("metadata.name") is None


def test_field_value_spells_values_like_go() -> None:
    obj = {"a": {"b": True, "c": 3, "d": None, "e": {"f": 1}}}
    assert [field_value(obj, p) for p in ("a.b", "a.c", "a.d", "a.e", "a.x.y")] == [
        "true", "3", "", "", ""]
    assert "spec.nodeName" in supported_fields("pods")
    assert supported_fields("configmaps") == ("metadata.name", "metadata.namespace")
