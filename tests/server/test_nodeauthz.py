"""The Node authorizer: table-driven decisions on a real store, then a real API
server answering a node's client certificate with 200s and 403s."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, ClientConfig, Forbidden, load_kubeconfig
from kubelite.server.app import APIServer, ServerConfig
from kubelite.server.certs import issue_certificate
from kubelite.server.nodeauthz import Attributes, NodeAuthorizer, pod_uses, selected_name
from kubelite.server.objects import Objects
from kubelite.store.sqlite import SqliteStore
from tests.ports import free_port

PODS = lookup("", "v1", "pods")
assert PODS is not None


def make_pod(name: str, node: str, *, secret: str = "", configmap: str = "", claim: str = "",
             env_secret: str = "", service_account: str = "") -> dict:
    volumes = []
    if secret:
        volumes.append({"name": "s", "secret": {"secretName": secret}})
    if configmap:
        volumes.append({"name": "c", "projected": {"sources": [{"configMap": {"name": configmap}}]}})
    if claim:
        volumes.append({"name": "p", "persistentVolumeClaim": {"claimName": claim}})
    container = {"name": "c", "image": "busybox"}
    if env_secret:
        container["env"] = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": env_secret,
                                                                         "key": "k"}}}]
    spec = {"nodeName": node, "containers": [container], "volumes": volumes}
    if service_account:
        spec["serviceAccountName"] = service_account
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


POD_A = make_pod("pod-a", "node-a", secret="secret-a", configmap="cm-a", claim="claim-a",
                 env_secret="env-a", service_account="sa-a")
POD_B = make_pod("pod-b", "node-b", secret="secret-b", configmap="cm-b", claim="claim-b",
                 service_account="sa-b")


@dataclass(frozen=True)
class Case:
    name: str
    attrs: Attributes
    allowed: bool


def a(verb: str, resource: str, name: str | None = None, *, group: str = "",
      namespace: str | None = "default", sub: str = "") -> Attributes:
    return Attributes(verb=verb, group=group, resource=resource, subresource=sub,
                      namespace=namespace, name=name)


CASES = [
    Case("node A reads the secret of its pod", a("get", "secrets", "secret-a"), True),
    Case("node A reads a secret its pod names in env", a("get", "secrets", "env-a"), True),
    Case("node A reads the secret of a pod on node B: 403", a("get", "secrets", "secret-b"),
         False),
    Case("node A reads a secret no pod uses: 403", a("get", "secrets", "other"), False),
    Case("node A lists all secrets: 403", a("list", "secrets"), False),
    Case("node A watches the secret of its pod by name", a("watch", "secrets", "secret-a"), True),
    Case("node A updates the secret of its pod: 403", a("update", "secrets", "secret-a"), False),
    Case("node A reads the configmap of its pod", a("get", "configmaps", "cm-a"), True),
    Case("node A reads the configmap of node B's pod: 403", a("get", "configmaps", "cm-b"),
         False),
    Case("node A reads the claim of its pod", a("get", "persistentvolumeclaims", "claim-a"), True),
    Case("node A reads the claim of node B's pod: 403",
         a("get", "persistentvolumeclaims", "claim-b"), False),
    Case("node A asks a token for its pod's service account",
         a("create", "serviceaccounts", "sa-a", sub="token"), True),
    Case("node A asks a token for node B's pod's service account: 403",
         a("create", "serviceaccounts", "sa-b", sub="token"), False),
    Case("node A reads any Node", a("get", "nodes", "node-b", namespace=None), True),
    Case("node A updates its own Node", a("update", "nodes", "node-a", namespace=None), True),
    Case("node A patches its own Node's status",
         a("patch", "nodes", "node-a", namespace=None, sub="status"), True),
    Case("node A creates its own Node", a("create", "nodes", "node-a", namespace=None), True),
    Case("node A updates node B: 403", a("update", "nodes", "node-b", namespace=None), False),
    Case("node A patches node B's status: 403",
         a("patch", "nodes", "node-b", namespace=None, sub="status"), False),
    Case("node A creates node B: 403", a("create", "nodes", "node-b", namespace=None), False),
    Case("node A deletes node B: 403", a("delete", "nodes", "node-b", namespace=None), False),
    Case("node A updates its own Lease",
         a("update", "leases", "node-a", group="coordination.k8s.io",
           namespace="kube-node-lease"), True),
    Case("node A updates node B's Lease: 403",
         a("update", "leases", "node-b", group="coordination.k8s.io",
           namespace="kube-node-lease"), False),
    Case("node A writes a Lease elsewhere: 403",
         a("create", "leases", "node-a", group="coordination.k8s.io"), False),
    Case("node A lists pods", a("list", "pods"), True),
    Case("node A patches the status of its pod", a("patch", "pods", "pod-a", sub="status"), True),
    Case("node A patches the status of node B's pod: 403",
         a("patch", "pods", "pod-b", sub="status"), False),
    Case("node A deletes its pod", a("delete", "pods", "pod-a"), True),
    Case("node A deletes node B's pod: 403", a("delete", "pods", "pod-b"), False),
    Case("node A creates a pod: 403", a("create", "pods"), False),
    Case("node A updates a pod's spec: 403", a("update", "pods", "pod-a"), False),
    Case("node A execs into a pod: 403", a("create", "pods", "pod-a", sub="exec"), False),
    Case("node A creates events", a("create", "events"), True),
    Case("node A creates events.k8s.io events", a("create", "events", group="events.k8s.io"),
         True),
    Case("node A deletes events: 403", a("delete", "events", "e"), False),
    Case("node A watches services", a("watch", "services"), True),
    Case("node A lists endpointslices", a("list", "endpointslices", group="discovery.k8s.io"),
         True),
    Case("node A lists persistentvolumes", a("list", "persistentvolumes", namespace=None), True),
    Case("node A creates a deployment: 403", a("create", "deployments", group="apps"), False),
    Case("node A lists namespaces: 403", a("list", "namespaces", namespace=None), False),
    Case("node A reads nodes/proxy: 403", a("get", "nodes", "node-b", namespace=None,
                                            sub="proxy"), False),
]


@pytest.fixture
async def objects(tmp_path) -> AsyncIterator[Objects]:
    store = SqliteStore(tmp_path / "state.db")
    await store.start()
    for pod in (POD_A, POD_B):
        await store.create(PODS.key("default", pod["metadata"]["name"]), orjson.dumps(pod))
    try:
        yield Objects(store)
    finally:
        await store.close()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_node_authorizer(objects: Objects, case: Case):
    assert await NodeAuthorizer(objects).allowed("node-a", case.attrs) is case.allowed


def test_pod_uses_every_kind_of_reference():
    pod = make_pod("p", "n", secret="s1", configmap="c1", claim="pvc", env_secret="s2")
    pod["spec"]["imagePullSecrets"] = [{"name": "pull"}]
    pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "c2"}},
                                               {"secretRef": {"name": "s3"}}]
    pod["spec"]["volumes"].append({"name": "eph", "ephemeral": {"volumeClaimTemplate": {}}})
    assert pod_uses(pod, "secrets") == {"s1", "s2", "s3", "pull"}
    assert pod_uses(pod, "configmaps") == {"c1", "c2"}
    assert pod_uses(pod, "persistentvolumeclaims") == {"pvc", "p-eph"}
    assert pod_uses(pod, "serviceaccounts") == {"default"}


@pytest.mark.parametrize("selector,name", [("metadata.name=s", "s"), ("metadata.name==s", "s"),
                                           ("metadata.name=s,type=x", None), ("", None),
                                           ("spec.nodeName=n", None)])
def test_selected_name(selector, name):
    assert selected_name(selector) == name


def _obj(kind: str, name: str, **rest) -> dict:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **rest}


async def test_a_node_certificate_gets_200_on_its_objects_and_403_on_others(tmp_path):
    port = free_port()
    async with APIServer(ServerConfig(data_dir=tmp_path, port=port),
                         SqliteStore(tmp_path / "state.db")):
        admin = load_kubeconfig(tmp_path / "kubeconfig")
        async with Client(admin) as client:
            for kind, plural, name in [("Secret", "secrets", "secret-a"),
                                       ("Secret", "secrets", "secret-b"),
                                       ("ConfigMap", "configmaps", "cm-a")]:
                await client.create(client.resource(plural), _obj(kind, name), namespace="default")
            for node in ("node-a", "node-b"):
                await client.create(client.resource("nodes"), _obj("Node", node))
            for pod in (POD_A, POD_B):
                body = make_pod(pod["metadata"]["name"], pod["spec"]["nodeName"],
                                secret=pod["spec"]["volumes"][0]["secret"]["secretName"])
                await client.create(client.resource("pods"), body, namespace="default")
        cert, key = issue_certificate(tmp_path / "pki" / "ca.crt", tmp_path / "pki" / "ca.key",
                                      common_name="system:node:node-a",
                                      organization="system:nodes", server=False, client=True)
        node_a = ClientConfig(server=admin.server, ca_data=admin.ca_data, cert_data=cert,
                              key_data=key)
        async with Client(node_a, read_retries=0) as client:
            secrets, nodes = client.resource("secrets"), client.resource("nodes")
            assert (await client.get(secrets, "secret-a", namespace="default"))["metadata"]
            with pytest.raises(Forbidden) as info:
                await client.get(secrets, "secret-b", namespace="default")
            assert 'User "system:node:node-a" cannot get resource "secrets"' in str(info.value)
            with pytest.raises(Forbidden):
                await client.list(secrets, namespace="default")
            listed = await client.list(secrets, namespace="default",
                                       field_selector="metadata.name=secret-a")
            assert [s["metadata"]["name"] for s in listed["items"]] == ["secret-a"]
            patched = await client.patch(nodes, "node-a", {"metadata": {"labels": {"x": "1"}}})
            assert patched["metadata"]["labels"]["x"] == "1"
            with pytest.raises(Forbidden):
                await client.patch(nodes, "node-b", {"metadata": {"labels": {"x": "1"}}})
            with pytest.raises(Forbidden):
                await client.create(nodes, _obj("Node", "node-c"))
            await client.delete(nodes, "node-a")
            assert (await client.create(nodes, _obj("Node", "node-a")))["metadata"]["uid"]
            leases = client.resource("leases")
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": "node-a"}, "spec": {"holderIdentity": "node-a"}}
            await client.create(leases, lease, namespace="kube-node-lease")
            with pytest.raises(Forbidden):
                await client.create(leases, {**lease, "metadata": {"name": "node-b"}},
                                    namespace="kube-node-lease")
            status = {"status": {"phase": "Running", "startTime": dt.datetime.now(
                dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
            pods = client.resource("pods")
            await client.patch(pods, "pod-a", status, namespace="default", subresource="status")
            with pytest.raises(Forbidden):
                await client.patch(pods, "pod-b", status, namespace="default",
                                   subresource="status")
