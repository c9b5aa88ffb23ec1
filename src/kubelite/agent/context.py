"""What every pod worker shares: clients, the runtime, the node's facts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.agent.config import AgentConfig
from kubelite.agent.events import Recorder
from kubelite.agent.pull import ImagePuller
from kubelite.agent.refs import ObjectSource
from kubelite.agent.sandbox import DNS
from kubelite.agent.volumes import VolumeManager
from kubelite.runtime.base import ContainerRuntime, ImageStore


@dataclass(slots=True)
class PodContext:
    config: AgentConfig
    client: Any  # kubelite.client.Client
    runtime: ContainerRuntime
    images: ImageStore
    recorder: Recorder
    source: ObjectSource
    volumes: VolumeManager
    puller: ImagePuller
    host_ip: Callable[[], str]
    allocatable: Callable[[], Mapping[str, str]]
    # The host's resolver settings, for dnsPolicy Default and as ClusterFirst's fallback.
    host_dns: DNS = ((), (), ())

    def log_dir(self, pod: dict[str, Any]) -> Path:
        """Where the pod's container logs go, as kubelet's /var/log/pods/NS_NAME_UID."""
        meta = pod["metadata"]
        return self.config.logs_dir / f"{meta.get('namespace')}_{meta['name']}_{meta['uid']}"
