"""kubelite's async Kubernetes API client: REST calls, informers, work queues, controllers.

Every component except the API server talks to the cluster through this package,
over HTTPS with the Kubernetes wire protocol, also inside one process.
"""

from kubelite.client.api import Client, find_resource, resource_path
from kubelite.client.controller import Controller, Expectations, controller_ref, slow_start_batch
from kubelite.client.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    Gone,
    InternalError,
    Invalid,
    MethodNotAllowed,
    NotFound,
    ServerUnavailable,
    TooManyRequests,
    TransportError,
    Unauthorized,
)
from kubelite.client.events import EventRecorder, make_event, object_reference
from kubelite.client.informer import (
    NAMESPACE_INDEX,
    Cache,
    Informer,
    InformerFactory,
    index_by_controller_uid,
    index_by_namespace,
    index_by_node_name,
    object_key,
    split_key,
    strip_managed_fields,
)
from kubelite.client.kubeconfig import (
    ClientConfig,
    ConfigError,
    config_from_dict,
    in_cluster_config,
    load_config,
    load_kubeconfig,
)
from kubelite.client.leaderelection import LeaderElector
from kubelite.client.workqueue import (
    ItemExponentialFailureRateLimiter,
    RateLimiter,
    ShutDown,
    WorkQueue,
)

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Cache",
    "Client",
    "ClientConfig",
    "ClientError",
    "ConfigError",
    "Conflict",
    "Controller",
    "EventRecorder",
    "Expectations",
    "Forbidden",
    "Gone",
    "Informer",
    "InformerFactory",
    "InternalError",
    "Invalid",
    "ItemExponentialFailureRateLimiter",
    "LeaderElector",
    "MethodNotAllowed",
    "NAMESPACE_INDEX",
    "NotFound",
    "RateLimiter",
    "ServerUnavailable",
    "ShutDown",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "WorkQueue",
    "config_from_dict",
    "controller_ref",
    "find_resource",
    "in_cluster_config",
    "index_by_controller_uid",
    "index_by_namespace",
    "index_by_node_name",
    "load_config",
    "load_kubeconfig",
    "make_event",
    "object_key",
    "object_reference",
    "resource_path",
    "slow_start_batch",
    "split_key",
    "strip_managed_fields",
]
