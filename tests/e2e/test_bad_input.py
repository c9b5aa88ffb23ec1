"""Bad input gets a Kubernetes Status with the right code, never a 500, and nothing
already stored changes."""

from __future__ import annotations

import ssl
import urllib.request
from urllib.error import HTTPError

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.e2e


class Raw:
    def __init__(self, server) -> None:
        cfg = yaml.safe_load(server.kubeconfig.read_text())
        self.base = cfg["clusters"][0]["cluster"]["server"]
        self.token = cfg["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", token: str | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {token if token is not None else self.token}")
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read() or b"null")
        except HTTPError as err:
            return err.code, orjson.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server)


CM_PATH = "/api/v1/namespaces/default/configmaps"


def test_status_codes(raw):
    code, body = raw.request("GET", "/api/v1/namespaces", token="wrong")
    assert code == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"
    code, body = raw.request("POST", CM_PATH, b"{not json")
    assert code == 400 and body["reason"] == "BadRequest"
    code, body = raw.request("POST", CM_PATH, b"a: [unclosed", "application/yaml")
    assert code == 400
    code, body = raw.request("POST", CM_PATH, orjson.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}))
    assert code == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
           "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "c"}},
                                 "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    code, body = raw.request("POST", "/apis/apps/v1/namespaces/default/deployments",
                             orjson.dumps(dep))
    assert code == 422
    fields = {c["field"] for c in body["details"]["causes"]}
    assert "spec.replicas" in fields and "spec.template.metadata.labels" in fields
    big = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                        "data": {"x": "a" * (4 * 1024 * 1024)}})
    code, body = raw.request("POST", CM_PATH, big)
    assert code == 413 and body["kind"] == "Status"
    code, body = raw.request("GET", "/api/v1/namespaces/default/nosuchthings")
    assert code == 404 and body["kind"] == "Status"
    code, body = raw.request("GET", "/apis/nosuch.group/v1/things")
    assert code == 404
    code, body = raw.request("POST", CM_PATH, orjson.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stale"}}))
    assert code == 201
    rv = body["metadata"]["resourceVersion"]
    body["data"] = {"a": "1"}
    assert raw.request("PUT", CM_PATH + "/stale", orjson.dumps(body))[0] == 200
    code, conflict = raw.request("PUT", CM_PATH + "/stale", orjson.dumps(body))
    assert code == 409 and conflict["reason"] == "Conflict"
    code, kept = raw.request("GET", CM_PATH + "/stale")
    assert kept["data"] == {"a": "1"} and kept["metadata"]["resourceVersion"] != rv


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["metadata", "spec", "name", "data", "kind", "apiVersion",
                                       "containers", "labels", "replicas", "selector", "x"]),
                      children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from([CM_PATH, "/api/v1/namespaces/default/pods",
                          "/apis/apps/v1/namespaces/default/deployments",
                          "/api/v1/namespaces/default/services",
                          CM_PATH + "/fuzz-target"]),
    method=st.sampled_from(["POST", "PUT", "PATCH"]),
    body=json_values,
    content_type=st.sampled_from(["application/json", "application/merge-patch+json",
                                  "application/strategic-merge-patch+json",
                                  "application/json-patch+json"]),
)
def test_fuzzed_writes_never_500_and_keep_stored_objects(raw, path, method, body, content_type):
    target = CM_PATH + "/fuzz-target"
    code, current = raw.request("GET", target)
    if code == 404:
        raw.request("POST", CM_PATH, orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": "fuzz-target"},
                                                   "data": {"keep": "me"}}))
        code, current = raw.request("GET", target)
    code, answer = raw.request(method, path, orjson.dumps(body), content_type)
    assert code < 500, answer
    assert answer is not None and (code < 300 or answer["kind"] == "Status")
    if code >= 400:
        after_code, after = raw.request("GET", target)
        assert after_code == 200 and after == current
