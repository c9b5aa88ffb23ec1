"""Decoding kubectl's protobuf request bodies into Kubernetes JSON objects."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api import schemas
from kubelite.api.errors import APIError
from kubelite.server import protobuf
from kubelite.server.protobuf import decode
from kubelite.server.protobuf_fields import MESSAGES

# --- a minimal protobuf encoder for fixtures -------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f(number: int, value: int | str | bytes) -> bytes:
    """One field: ints (and bools) as varints, str and bytes (nested messages) length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(int(value))
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def msg(*fields: bytes) -> bytes:
    return b"".join(fields)


def entry(key: str, value: str | bytes) -> bytes:
    return msg(f(1, key), f(2, value))


def body(api_version: str, kind: str, raw: bytes, *, encoding: str = "") -> bytes:
    type_meta = msg(f(1, api_version), f(2, kind))
    return b"k8s\x00" + msg(f(1, type_meta), f(2, raw), f(3, encoding), f(4, ""))


def int_or_string(value: int | str) -> bytes:
    if isinstance(value, int):
        return msg(f(1, 0), f(2, value))
    return msg(f(1, 1), f(3, value))


def quantity(text: str) -> bytes:
    return msg(f(1, text))


NEW_YEAR = 1704067200  # 2024-01-01T00:00:00Z

# --- real bodies sent by kubectl 1.32 (kubectl-1.32-request-log.md, t26 and t28) ---------
#
# The log wrote bytes >= 0x80 as U+FFFD. They are restored here from the field numbers
# they must carry: the Deployment's raw length 167 (\xa7\x01), Container fields 16, 17,
# 18, 20 and PodSpec fields 16, 17, 19, 24 (two-byte tags); every length around them
# checks out with these values.

_EMPTY_META = b'\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00'
_CONTAINER_TAIL = b"\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00"
_PODSPEC_TAIL = b"X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00"

REAL_BODIES: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "auth can-i create pods",
        b"k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12?\n\x10"
        + _EMPTY_META
        + b'\x12!\n\x1f\n\x07default\x12\x06create\x1a\x00"\x00*\x04pods2\x00:\x00'
        b'\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00',
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {
                "resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}
            },
            "status": {"allowed": False},
        },
    ),
    (
        "auth can-i '*' '*'",
        b"k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x120\n\x10"
        + _EMPTY_META
        + b'\x12\x12\n\x10\n\x00\x12\x01*\x1a\x00"\x00*\x01*2\x00:\x00'
        b'\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00',
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {"verb": "*", "resource": "*"}},
            "status": {"allowed": False},
        },
    ),
    (
        "auth whoami v1",
        b"k8s\x00\n-\n\x18authentication.k8s.io/v1\x12\x11SelfSubjectReview\x12\x1a\n\x10"
        + _EMPTY_META
        + b'\x12\x06\n\x04\n\x00\x12\x00\x1a\x00"\x00',
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {},
            "status": {"userInfo": {}},
        },
    ),
    (
        "auth whoami v1beta1",
        b"k8s\x00\n2\n\x1dauthentication.k8s.io/v1beta1\x12\x11SelfSubjectReview\x12\x1a\n\x10"
        + _EMPTY_META
        + b'\x12\x06\n\x04\n\x00\x12\x00\x1a\x00"\x00',
        {
            "apiVersion": "authentication.k8s.io/v1beta1",
            "kind": "SelfSubjectReview",
            "metadata": {},
            "status": {"userInfo": {}},
        },
    ),
    (
        "create deployment d1 --image=nginx",
        b"k8s\x00\n\x15\n\x07apps/v1\x12\nDeployment\x12\xa7\x01\n\x1d\n\x02d1"
        b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00Z\t\n\x03app\x12\x02d1'
        b"\x12x\x08\x01\x12\x0b\n\t\n\x03app\x12\x02d1\x1a_\n\x1b"
        + _EMPTY_META
        + b'Z\t\n\x03app\x12\x02d1\x12@\x12"\n\x05nginx\x12\x05nginx*\x00B\x00j\x00r\x00'
        + _CONTAINER_TAIL
        + b"\x1a\x002\x00B\x00J\x00R\x00"
        + _PODSPEC_TAIL
        + b'"\x02\n\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00"\x00',
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d1", "labels": {"app": "d1"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "d1"}},
                "template": {
                    "metadata": {"labels": {"app": "d1"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]},
                },
                "strategy": {},
            },
            "status": {},
        },
    ),
    (
        "create configmap c1 --from-literal=a=b",
        b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12\x1c\n\x12\n\x02c1"
        b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x06\n\x01a\x12\x01b\x1a\x00"\x00',
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "b"}},
    ),
    (
        "create secret generic s1 --from-literal=a=b",
        b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x1e\n\x12\n\x02s1"
        b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x06\n\x01a\x12\x01b\x1a\x00\x1a\x00"\x00',
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"a": "Yg=="}},
    ),
    (
        "create namespace n1",
        b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x1a\n\x12\n\x02n1"
        b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x00\x1a\x02\n\x00\x1a\x00"\x00',
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "n1"},
            "spec": {},
            "status": {},
        },
    ),
    (
        "create job j1 --image=busybox",
        b"k8s\x00\n\x0f\n\x08batch/v1\x12\x03Job\x12z\n\x12\n\x02j1"
        b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12Z2X\n\x10'
        + _EMPTY_META
        + b"\x12D\x12!\n\x02j1\x12\x07busybox*\x00B\x00j\x00r\x00"
        + _CONTAINER_TAIL
        + b"\x1a\x05Never2\x00B\x00J\x00R\x00"
        + _PODSPEC_TAIL
        + b'\x1a\x08 \x00(\x000\x00:\x00\x1a\x00"\x00',
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j1"},
            "spec": {
                "template": {
                    "metadata": {},
                    "spec": {
                        "containers": [{"name": "j1", "image": "busybox", "resources": {}}],
                        "restartPolicy": "Never",
                    },
                }
            },
            "status": {},
        },
    ),
    (
        "create token default",
        b"k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1a\n\x10"
        + _EMPTY_META
        + b'\x12\x00\x1a\x04\n\x00\x12\x00\x1a\x00"\x00',
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {},
            "spec": {},
            "status": {"token": ""},
        },
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(b, e) for _, b, e in REAL_BODIES], ids=[n for n, _, _ in REAL_BODIES]
)
def test_real_kubectl_bodies_decode_to_the_json_kubectl_would_send(
    raw: bytes, expected: dict[str, Any]
) -> None:
    assert decode(raw) == expected


# --- a full Deployment ---------------------------------------------------------------------


def _deployment() -> bytes:
    labels = f(11, entry("app", "web"))
    container = msg(
        f(1, "web"),
        f(2, "nginx:1.27"),
        f(3, "nginx"),
        f(4, "-g"),
        f(4, "daemon off;"),
        f(6, msg(f(1, "http"), f(3, 8080), f(4, "TCP"))),
        f(6, msg(f(3, 9090), f(2, 0))),
        f(7, msg(f(1, "MODE"), f(2, "prod"))),
        f(7, msg(f(1, "KEY"), f(3, msg(f(3, msg(f(1, msg(f(1, "app-config"))), f(2, "key"))))))),
        f(
            8,
            msg(
                f(1, entry("cpu", quantity("500m"))),
                f(1, entry("memory", quantity("128Mi"))),
                f(2, entry("cpu", quantity("250m"))),
            ),
        ),
        f(9, msg(f(1, "cfg"), f(2, 1), f(3, "/etc/app"))),
        f(10, msg(f(1, f(2, msg(f(1, "/healthz"), f(2, int_or_string("http"))))), f(2, 5))),
        f(11, msg(f(1, f(3, f(1, int_or_string(8080)))), f(4, 0))),
        f(14, "IfNotPresent"),
        f(15, msg(f(1, msg(f(2, "ALL"))), f(2, 0), f(4, 0), f(5, 1))),
        f(16, 0),
    )
    volume = msg(f(1, "cfg"), f(2, msg(f(19, msg(f(1, msg(f(1, "app-config"))), f(3, 420))))))
    pod_spec = msg(
        f(1, volume),
        f(2, container),
        f(4, 30),
        f(11, 0),
        f(14, msg(f(2, 1000), f(4, msg(varint(1), varint(2))), f(4, 3))),
        f(21, 0),
        f(7, entry("disk", "ssd")),
    )
    spec = msg(
        f(1, 0),
        f(
            2,
            msg(
                f(1, entry("app", "web")),
                f(2, msg(f(1, "tier"), f(2, "In"), f(3, "a"), f(3, "b"))),
            ),
        ),
        f(3, msg(f(1, labels), f(2, pod_spec))),
        f(
            4,
            msg(
                f(1, "RollingUpdate"),
                f(2, msg(f(1, int_or_string(1)), f(2, int_or_string("25%")))),
            ),
        ),
        f(5, 0),
        f(7, 0),
        f(9, 600),
        f(99, "a field from a newer Kubernetes"),
        varint(98 << 3 | 5) + b"\x01\x02\x03\x04",
    )
    meta = msg(
        f(1, "web"),
        f(3, "default"),
        f(8, msg(f(1, NEW_YEAR), f(2, 5))),
        labels,
        f(12, entry("note", "x")),
    )
    return body("apps/v1", "Deployment", msg(f(1, meta), f(2, spec), f(3, b"")))


def test_deployment_with_containers_ports_env_resources_probes_and_volumes() -> None:
    assert decode(_deployment()) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {"app": "web"},
            "annotations": {"note": "x"},
        },
        "spec": {
            "replicas": 0,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "volumes": [
                        {"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 420}}
                    ],
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "command": ["nginx"],
                            "args": ["-g", "daemon off;"],
                            "ports": [
                                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                {"containerPort": 9090},
                            ],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {
                                    "name": "KEY",
                                    "valueFrom": {
                                        "configMapKeyRef": {"name": "app-config", "key": "key"}
                                    },
                                },
                            ],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "250m"},
                            },
                            "volumeMounts": [
                                {"name": "cfg", "readOnly": True, "mountPath": "/etc/app"}
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "initialDelaySeconds": 5,
                            },
                            "readinessProbe": {"tcpSocket": {"port": 8080}},
                            "imagePullPolicy": "IfNotPresent",
                            "securityContext": {
                                "capabilities": {"drop": ["ALL"]},
                                "privileged": False,
                                "runAsUser": 0,
                                "runAsNonRoot": True,
                            },
                        }
                    ],
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsUser": 1000, "supplementalGroups": [1, 2, 3]},
                    "automountServiceAccountToken": False,
                    "nodeSelector": {"disk": "ssd"},
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"},
            },
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    }


# --- maps, bytes, quantities, int-or-string, times ---------------------------------------------

_TIME = msg(f(1, NEW_YEAR), f(2, 999))

SHAPES: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "secret bytes are base64, stringData stays text, immutable false is kept",
        body(
            "v1",
            "Secret",
            msg(
                f(1, f(1, "s")),
                f(2, entry("bin", b"\x00\xff")),
                f(2, entry("empty", b"")),
                f(3, "Opaque"),
                f(4, entry("plain", "text")),
                f(5, 0),
            ),
        ),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"bin": "AP8=", "empty": ""},
            "type": "Opaque",
            "stringData": {"plain": "text"},
            "immutable": False,
        },
    ),
    (
        "configmap binaryData and a later map entry replacing an earlier one",
        body(
            "v1",
            "ConfigMap",
            msg(f(2, entry("k", "old")), f(2, entry("k", "new")), f(3, entry("b", b"hi"))),
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "data": {"k": "new"},
            "binaryData": {"b": "aGk="},
        },
    ),
    (
        "quota quantities, a map entry without value is a zero quantity",
        body(
            "v1",
            "ResourceQuota",
            msg(
                f(
                    2,
                    msg(
                        f(1, entry("pods", quantity("10"))),
                        f(1, entry("requests.cpu", quantity("1500m"))),
                        f(1, msg(f(1, "services"))),
                        f(2, "BestEffort"),
                    ),
                )
            ),
        ),
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "spec": {
                "hard": {"pods": "10", "requests.cpu": "1500m", "services": "0"},
                "scopes": ["BestEffort"],
            },
        },
    ),
    (
        "service ports: int and named target ports, required port kept, zero nodePort dropped",
        body(
            "v1",
            "Service",
            msg(
                f(
                    2,
                    msg(
                        f(
                            1,
                            msg(
                                f(1, "http"),
                                f(2, "TCP"),
                                f(3, 80),
                                f(4, int_or_string(8080)),
                                f(5, 0),
                            ),
                        ),
                        f(1, msg(f(3, 0), f(4, int_or_string("metrics")))),
                        f(2, entry("app", "web")),
                        f(4, "ClusterIP"),
                        f(13, 0),
                    ),
                ),
                f(3, msg(f(1, b""))),
            ),
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"port": 0, "targetPort": "metrics"},
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        },
    ),
    (
        "event: Time drops nanoseconds, MicroTime keeps microseconds, negative int32",
        body(
            "v1",
            "Event",
            msg(
                f(1, f(1, "e")),
                f(2, msg(f(1, "Pod"), f(3, "web-0"))),
                f(6, _TIME),
                f(7, b""),
                f(8, -1),
                f(10, msg(f(1, NEW_YEAR), f(2, 123456789))),
            ),
        ),
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "web-0"},
            "firstTimestamp": "2024-01-01T00:00:00Z",
            "count": -1,
            "eventTime": "2024-01-01T00:00:00.123456Z",
        },
    ),
    (
        "managedFields: fieldsV1 is JSON, time is RFC 3339",
        body(
            "v1",
            "ConfigMap",
            msg(
                f(
                    1,
                    f(
                        17,
                        msg(
                            f(1, "kubectl"),
                            f(2, "Update"),
                            f(3, "v1"),
                            f(4, _TIME),
                            f(6, "FieldsV1"),
                            f(7, f(1, b'{"f:data":{"f:a":{}}}')),
                        ),
                    ),
                )
            ),
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "managedFields": [
                    {
                        "manager": "kubectl",
                        "operation": "Update",
                        "apiVersion": "v1",
                        "time": "2024-01-01T00:00:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:data": {"f:a": {}}},
                    }
                ]
            },
        },
    ),
    (
        "user extra is a map of string lists",
        body(
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            msg(
                f(
                    2,
                    f(
                        1,
                        msg(
                            f(1, "alice"),
                            f(3, "dev"),
                            f(3, "ops"),
                            f(4, entry("scopes", msg(f(1, "a"), f(1, "b")))),
                        ),
                    ),
                )
            ),
        ),
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "status": {
                "userInfo": {
                    "username": "alice",
                    "groups": ["dev", "ops"],
                    "extra": {"scopes": ["a", "b"]},
                }
            },
        },
    ),
    (
        "pdb: int-or-string percent, map of times, required zero counters kept",
        body(
            "policy/v1",
            "PodDisruptionBudget",
            msg(
                f(2, msg(f(1, int_or_string("50%")), f(2, f(1, entry("app", "web"))))),
                f(3, msg(f(1, 0), f(2, entry("web-0", _TIME)), f(3, 0), f(4, 0), f(5, 0), f(6, 0))),
            ),
        ),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
            "status": {
                "disruptedPods": {"web-0": "2024-01-01T00:00:00Z"},
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0,
            },
        },
    ),
    (
        "delete options: explicit zero grace period, dry run list, preconditions",
        body(
            "v1",
            "DeleteOptions",
            msg(f(1, 0), f(2, f(1, "uid-1")), f(4, "Foreground"), f(5, "All")),
        ),
        {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "uid-1"},
            "propagationPolicy": "Foreground",
            "dryRun": ["All"],
        },
    ),
    (
        "eviction carries delete options; a zero Go time is left out",
        body(
            "policy/v1",
            "Eviction",
            msg(f(1, msg(f(1, "web-0"), f(8, b""))), f(2, f(4, "Background"))),
        ),
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-0"},
            "deleteOptions": {"propagationPolicy": "Background"},
        },
    ),
    (
        "priority class: negative value, false globalDefault dropped",
        body(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            msg(f(1, f(1, "low")), f(2, -5), f(3, 0), f(4, "low priority"), f(5, "Never")),
        ),
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "low"},
            "value": -5,
            "description": "low priority",
            "preemptionPolicy": "Never",
        },
    ),
    (
        "ingress: inlined rule value and service backends",
        body(
            "networking.k8s.io/v1",
            "Ingress",
            msg(
                f(
                    2,
                    msg(
                        f(
                            3,
                            msg(
                                f(1, "example.com"),
                                f(
                                    2,
                                    f(
                                        1,
                                        f(
                                            1,
                                            msg(
                                                f(1, "/"),
                                                f(2, f(4, msg(f(1, "web"), f(2, f(2, 80))))),
                                                f(3, "Prefix"),
                                            ),
                                        ),
                                    ),
                                ),
                            ),
                        ),
                        f(4, "nginx"),
                    ),
                )
            ),
        ),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "spec": {
                "rules": [
                    {
                        "host": "example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                    "pathType": "Prefix",
                                }
                            ]
                        },
                    }
                ],
                "ingressClassName": "nginx",
            },
        },
    ),
    (
        "cronjob: a false pointer is kept, nested job template",
        body(
            "batch/v1",
            "CronJob",
            msg(f(2, msg(f(1, "*/5 * * * *"), f(4, 0), f(5, f(2, f(1, 1))), f(8, "UTC")))),
        ),
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "spec": {
                "schedule": "*/5 * * * *",
                "suspend": False,
                "jobTemplate": {"spec": {"parallelism": 1}},
                "timeZone": "UTC",
            },
        },
    ),
    (
        "role binding subjects and roleRef",
        body(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            msg(
                f(2, msg(f(1, "ServiceAccount"), f(3, "default"), f(4, "ns"))),
                f(3, msg(f(1, "rbac.authorization.k8s.io"), f(2, "Role"), f(3, "reader"))),
            ),
        ),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "ns"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        },
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(b, e) for _, b, e in SHAPES], ids=[n for n, _, _ in SHAPES]
)
def test_value_shapes(raw: bytes, expected: dict[str, Any]) -> None:
    assert decode(raw) == expected


# --- malformed input ---------------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes, str]] = [
    ("a JSON body", b'{"kind":"Namespace"}', "does not appear to be a protobuf message"),
    ("an empty body", b"", "does not appear to be a protobuf message"),
    ("a truncated varint", b"k8s\x00\x0a\x80", "truncated varint"),
    ("a truncated length-delimited field", b"k8s\x00\x0a\x05ab", "truncated field"),
    (
        "a varint longer than 10 bytes",
        b"k8s\x00\x08" + b"\xff" * 11 + b"\x01",
        "longer than 10 bytes",
    ),
    ("a group wire type", body("v1", "Namespace", b"\x0b"), "unsupported wire type 3"),
    ("field number zero", body("v1", "Namespace", b"\x02\x00"), "invalid field number 0"),
    ("an unknown kind", body("v1", "Frobnicator", b""), 'no kind "Frobnicator" is registered'),
    (
        "a version kubelite does not serve (auth whoami's last fallback)",
        b"k8s\x00\n3\n\x1eauthentication.k8s.io/v1alpha1\x12\x11SelfSubjectReview\x12\x1a\n\x10"
        + _EMPTY_META
        + b'\x12\x06\n\x04\n\x00\x12\x00\x1a\x00"\x00',
        'version "authentication.k8s.io/v1alpha1"',
    ),
    ("a kind without protobuf table", body("v1", "Node", b""), "cannot be decoded from protobuf"),
    ("no kind", body("v1", "", b""), "'Kind' is missing"),
    ("no apiVersion", body("", "Namespace", b""), "'apiVersion' is missing"),
    ("a gzip content encoding", body("v1", "Namespace", b"", encoding="gzip"), "content encoding"),
    ("a varint where a message belongs", body("v1", "Namespace", f(1, 5)), "Namespace.metadata"),
    (
        "a string where an int belongs",
        body("apps/v1", "Deployment", f(2, f(1, "3"))),
        "expected a varint",
    ),
    ("a truncated nested message", body("v1", "Namespace", f(1, b"\x0a\x09ab")), "truncated field"),
    (
        "a time whose seconds are not a varint",
        body("v1", "ConfigMap", f(1, f(8, f(1, "soon")))),
        "field 1 must be a varint",
    ),
    (
        "fieldsV1 that is not JSON",
        body("v1", "ConfigMap", f(1, f(17, f(7, f(1, b"{"))))),
        "fieldsV1 is not JSON",
    ),
]


@pytest.mark.parametrize(
    ("raw", "fragment"), [(b, m) for _, b, m in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_bodies_are_a_400_bad_request(raw: bytes, fragment: str) -> None:
    with pytest.raises(APIError) as caught:
        decode(raw)
    assert caught.value.code == 400
    assert caught.value.reason == "BadRequest"
    assert fragment in caught.value.message


# --- the field tables against the Kubernetes schemas -----------------------------------------


def _table_names(table: str) -> set[str]:
    names: set[str] = set()
    for field in MESSAGES[table].values():
        names |= _table_names(field.inline) if field.inline else {field.name}
    return names


_SCHEMA_TABLES = sorted(name for name in MESSAGES if name in schemas.definitions())


@pytest.mark.parametrize("definition", _SCHEMA_TABLES)
def test_table_numbers_exactly_the_schema_properties(definition: str) -> None:
    props = set(schemas.definitions()[definition].get("properties", {}))
    names = _table_names(definition)
    assert names <= props
    # A top-level object's apiVersion and kind travel in the envelope, not in its message.
    assert props - names <= {"apiVersion", "kind"}


def test_every_type_reachable_from_a_table_has_a_table() -> None:
    special = {
        protobuf.QUANTITY,
        protobuf.INT_OR_STRING,
        protobuf.TIME,
        protobuf.MICRO_TIME,
        protobuf.FIELDS_V1,
    }

    def refs(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
            return found.union(*(refs(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(refs(v) for v in node))
        return set()

    reachable = {ref for name in _SCHEMA_TABLES for ref in refs(schemas.definitions()[name])}
    assert sorted(reachable - special - set(MESSAGES)) == []


def test_inline_tables_exist_only_where_json_inlines_a_struct() -> None:
    inline = {f.inline for fields in MESSAGES.values() for f in fields.values() if f.inline}
    assert inline <= set(MESSAGES)
    assert {name for name in MESSAGES if name not in schemas.definitions()} <= inline
