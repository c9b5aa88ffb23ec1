"""The resource registry: every API resource kubelite serves is declared here once.

Routing, discovery, OpenAPI, validation and the store keys are all derived from
these declarations, so adding a resource is one `Resource(...)` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class Subresource:
    name: str
    kind: str
    group: str = ""
    version: str = ""
    verbs: tuple[str, ...] = ("get", "patch", "update")


STATUS = Subresource("status", "")
SCALE = Subresource("scale", "Scale", "autoscaling", "v1")


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Virtual resources (reviews) are answered, never stored.
    stored: bool = True
    # Served by conversion (api/conversion.py) from the objects of the same group
    # and plural stored at this version; "" for the version objects are stored at.
    stored_as: str = ""
    singular: str = field(default="")

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def group_resource(self) -> str:
        """`deployments.apps` or `pods`: how Kubernetes names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """`Deployment.apps` or `Pod`: how Kubernetes names a kind in Invalid messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def definition(self) -> str:
        """The OpenAPI definition name, e.g. io.k8s.api.apps.v1.Deployment."""
        from kubelite.api.schemas import definition_for

        return definition_for(self.group, self.version, self.kind)

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    def key_prefix(self, namespace: str | None = None) -> str:
        """Store key prefix: `/<group or core>/<plural>/[<namespace>/]`."""
        base = f"/{self.group or 'core'}/{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"/{self.group or 'core'}/{self.plural}/{namespace}/{name}"
        return f"/{self.group or 'core'}/{self.plural}/{name}"


def _r(group: str, version: str, kind: str, plural: str, **kw) -> Resource:
    return Resource(group, version, kind, plural, **kw)


_LOG = Subresource("log", "Pod", verbs=("get",))
_EXEC = Subresource("exec", "PodExecOptions", verbs=("create", "get"))
_ATTACH = Subresource("attach", "PodAttachOptions", verbs=("create", "get"))
_PORTFORWARD = Subresource("portforward", "PodPortForwardOptions", verbs=("create", "get"))
_BINDING = Subresource("binding", "Binding", verbs=("create",))
_EVICTION = Subresource("eviction", "Eviction", "policy", "v1", verbs=("create",))
_TOKEN = Subresource("token", "TokenRequest", "authentication.k8s.io", "v1", verbs=("create",))
_FINALIZE = Subresource("finalize", "Namespace", verbs=("update",))

RESOURCES: tuple[Resource, ...] = (
    _r("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
       subresources=(STATUS, _FINALIZE)),
    _r("", "v1", "Pod", "pods", short_names=("po",), categories=("all",),
       subresources=(STATUS, _LOG, _EXEC, _ATTACH, _PORTFORWARD, _BINDING, _EVICTION)),
    _r("", "v1", "Service", "services", short_names=("svc",), categories=("all",),
       subresources=(STATUS,)),
    _r("", "v1", "Endpoints", "endpoints", short_names=("ep",), singular="endpoints"),
    _r("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "Node", "nodes", namespaced=False, short_names=("no",), subresources=(STATUS,)),
    _r("", "v1", "Event", "events", short_names=("ev",)),
    _r("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False,
       short_names=("pv",), subresources=(STATUS,)),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
       subresources=(STATUS,)),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",),
       subresources=(_TOKEN,)),
    _r("", "v1", "Binding", "bindings", verbs=("create",)),
    _r("apps", "v1", "Deployment", "deployments", short_names=("deploy",), categories=("all",),
       subresources=(STATUS, SCALE)),
    _r("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
       subresources=(STATUS, SCALE)),
    _r("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",), categories=("all",),
       subresources=(STATUS, SCALE)),
    _r("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",), categories=("all",),
       subresources=(STATUS,)),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _r("batch", "v1", "Job", "jobs", categories=("all",), subresources=(STATUS,)),
    _r("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=("all",),
       subresources=(STATUS,)),
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",),
       subresources=(STATUS,)),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    _r("coordination.k8s.io", "v1", "Lease", "leases"),
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False,
       short_names=("sc",)),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False,
       short_names=("pc",)),
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",),
       subresources=(STATUS,)),
    _r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       short_names=("hpa",), categories=("all",), subresources=(STATUS,)),
    # After v2, which discovery then prefers, as Kubernetes does; `kubectl autoscale`
    # (up to 1.32 at least) writes v1.
    _r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       short_names=("hpa",), categories=("all",), subresources=(STATUS,), stored_as="v2"),
    # Read from the agents on demand (server/metrics.py), never stored.
    _r("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", namespaced=False,
       verbs=("get", "list"), stored=False),
    _r("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", verbs=("get", "list"), stored=False),
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
       namespaced=False, verbs=("create",), stored=False),
    _r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
       namespaced=False, verbs=("create",), stored=False),
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
       namespaced=False, verbs=("create",), stored=False),
)

_BY_PATH: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}
_BY_KIND: dict[tuple[str, str], Resource] = {(r.group_version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> Resource | None:
    return _BY_KIND.get((api_version, kind))


def group_versions() -> dict[str, list[str]]:
    """Group name -> its versions, in declaration order; the core group is ''."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out


def resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]
