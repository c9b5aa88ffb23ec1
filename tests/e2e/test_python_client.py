"""The PyPI `kubernetes` client, unchanged, against a real kubelite API server."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(server):
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        yield api_client


def test_configmap_crud_list_watch(api):
    core = client.CoreV1Api(api)
    events: list[tuple[str, str]] = []
    w = watch.Watch()
    started = threading.Event()

    def watcher() -> None:
        started.set()
        for ev in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=5,
                           label_selector="suite=pyclient"):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=watcher)
    thread.start()
    started.wait()
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm",
                                                           labels={"suite": "pyclient"}),
                              data={"a": "1"})
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.uid and created.metadata.resource_version
    read = core.read_namespaced_config_map("py-cm", "default")
    read.data["b"] = "2"
    updated = core.replace_namespaced_config_map("py-cm", "default", read)
    assert updated.data == {"a": "1", "b": "2"}
    stale = read  # carries the old resourceVersion
    stale.data["c"] = "3"
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("py-cm", "default", stale)
    assert exc.value.status == 409
    patched = core.patch_namespaced_config_map("py-cm", "default", {"data": {"c": "4"}})
    assert patched.data["c"] == "4"
    listed = core.list_namespaced_config_map("default", label_selector="suite=pyclient")
    assert [i.metadata.name for i in listed.items] == ["py-cm"]
    core.delete_namespaced_config_map("py-cm", "default")
    thread.join(10)
    assert ("ADDED", "py-cm") in events and ("DELETED", "py-cm") in events
    assert events.count(("MODIFIED", "py-cm")) == 2


def test_pod_and_deployment_crud(api):
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pod"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]))
    created = core.create_namespaced_pod("default", pod)
    assert created.spec.restart_policy == "Always"
    assert created.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert created.status.phase == "Pending"
    pods = core.list_pod_for_all_namespaces(field_selector="metadata.name=py-pod")
    assert len(pods.items) == 1
    core.delete_namespaced_pod("py-pod", "default")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("py-pod", "default")
    assert exc.value.status == 404

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-dep"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c",
                                                                     image="busybox")]))))
    created = apps.create_namespaced_deployment("default", dep)
    assert created.spec.strategy.rolling_update.max_surge == "25%"
    assert created.spec.revision_history_limit == 10
    scaled = apps.patch_namespaced_deployment_scale("py-dep", "default",
                                                    {"spec": {"replicas": 4}})
    assert scaled.spec.replicas == 4
    got = apps.read_namespaced_deployment("py-dep", "default")
    assert got.spec.replicas == 4
    assert [d.metadata.name for d in apps.list_namespaced_deployment("default").items
            if d.metadata.name == "py-dep"] == ["py-dep"]
    apps.delete_namespaced_deployment("py-dep", "default")
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("py-dep", "default")
    assert exc.value.status == 404
