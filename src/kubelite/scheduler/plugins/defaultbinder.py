"""DefaultBinder: POST pods/NAME/binding, as kube-scheduler binds."""

from __future__ import annotations

from kubelite.client import Client
from kubelite.client.errors import ClientError
from kubelite.scheduler.framework import SUCCESS, CycleState, Status
from kubelite.scheduler.nodeinfo import PodInfo

NAME = "DefaultBinder"


class DefaultBinder:
    name = NAME

    def __init__(self, *, client: Client) -> None:
        self.client = client

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        try:
            await self.client.bind(pod.pod, node_name)
        except ClientError as exc:
            return Status.error(NAME, str(exc))
        return SUCCESS
