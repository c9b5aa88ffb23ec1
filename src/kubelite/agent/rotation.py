"""Running a joined agent on its node credentials, and rotating them before they
expire, as kubelet's certificate manager: when 70 to 90 % (a random point, so
that nodes joined together do not renew together) of the client certificate's
lifetime has passed, new keys are made and signed with the current certificate
as the identity, the files replaced, and the TLS contexts reloaded in place:
new connections, to and from the agent, use the new certificates; open ones
keep theirs, which stay valid until they expire.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import ssl
from dataclasses import dataclass, replace

from kubelite.agent.agent import Agent, open_runtime
from kubelite.agent.apiclient import AgentClient
from kubelite.agent.config import AgentConfig
from kubelite.agent.join import (
    JoinError,
    NodeCredentials,
    clear_dir,
    make_requests,
    request_certificates,
    store_credentials,
)
from kubelite.client import ClientConfig, ClientError
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

RENEW_AT = (0.7, 0.9)
# Signed certificates are backdated by five minutes (server/nodecerts.py).
_BACKDATE = 300
_MIN_SECONDS = 600


@dataclass(frozen=True, slots=True)
class RotatingClientConfig(ClientConfig):
    """A client config whose TLS context is shared and reloaded on rotation; a
    copy without a client certificate (as tls.Authenticator makes for token
    reviews) gets a context of its own."""

    shared: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.shared is not None and self.cert_data:
            return self.shared
        return ClientConfig.ssl_context(self)


def client_context(creds: NodeCredentials) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(creds.ca_cert))
    context.load_cert_chain(str(creds.client_cert), str(creds.client_key))
    return context


def renewal_time(creds: NodeCredentials, *, rng: random.Random | None = None) -> dt.datetime:
    lifetime = creds.not_after - creds.not_before
    return creds.not_before + lifetime * (rng or random).uniform(*RENEW_AT)


class CertificateRotation:
    def __init__(self, creds: NodeCredentials, *, client_tls: ssl.SSLContext,
                 serving_tls: ssl.SSLContext | None) -> None:
        self.creds = creds
        self.client_tls = client_tls
        self.serving_tls = serving_tls

    async def rotate(self) -> NodeCredentials:
        """Renew both certificates now, with the current client certificate as identity."""
        creds = self.creds
        lifetime = int((creds.not_after - creds.not_before).total_seconds())
        workdir = creds.pki / "rotating"
        await make_requests(workdir)
        try:
            config = await asyncio.to_thread(creds.client_config)
            answer = await request_certificates(
                config, node_name=creds.node_name, addresses=creds.addresses, workdir=workdir,
                seconds=max(lifetime - _BACKDATE, _MIN_SECONDS))
            self.creds = await asyncio.to_thread(
                store_credentials, creds.root, node_name=creds.node_name, server=creds.server,
                addresses=creds.addresses, answer=answer, keys=workdir)
        finally:
            await asyncio.to_thread(clear_dir, workdir)
        await asyncio.to_thread(self._reload)
        log.info("rotated the node certificates of %s; valid until %s", creds.node_name,
                 self.creds.not_after.isoformat())
        return self.creds

    def _reload(self) -> None:
        self.client_tls.load_cert_chain(str(self.creds.client_cert), str(self.creds.client_key))
        if self.serving_tls is not None:
            self.serving_tls.load_cert_chain(str(self.creds.serving_cert),
                                             str(self.creds.serving_key))

    async def run(self) -> None:
        while True:
            wait = (renewal_time(self.creds) - dt.datetime.now(dt.UTC)).total_seconds()
            log.info("node certificates of %s renew in %.0f s", self.creds.node_name, wait)
            await asyncio.sleep(max(wait, 0.0))
            try:
                await self.rotate()
            except (ClientError, JoinError, OSError, ValueError) as e:
                left = (self.creds.not_after - dt.datetime.now(dt.UTC)).total_seconds()
                log.warning("rotating node certificates failed (%s); retrying", e)
                await asyncio.sleep(min(max(left / 20, 1.0), 60.0))


async def run(config: AgentConfig, *, stop: asyncio.Event, creds: NodeCredentials) -> int:
    """Run the agent on its node credentials, rotating them, until `stop` is set."""
    tls = await asyncio.to_thread(client_context, creds)
    base = await asyncio.to_thread(creds.client_config)
    client = RotatingClientConfig(server=base.server, ca_data=base.ca_data,
                                  cert_data=base.cert_data, key_data=base.key_data, shared=tls)
    config = replace(config, client=client, tls_cert_file=creds.serving_cert,
                     tls_key_file=creds.serving_key, ca_cert_file=None, ca_key_file=None)
    runtime, images = await open_runtime(config)
    async with AgentClient(client, user_agent=f"kubelite-agent/{config.node_name}") as api:
        async with Agent(config, client=api, runtime=runtime, images=images) as agent:
            serving = agent.server.ssl_context if agent.server is not None else None
            rotation = CertificateRotation(creds, client_tls=tls, serving_tls=serving)
            task = asyncio.create_task(rotation.run(), name="certificate rotation")
            try:
                await stop.wait()
            finally:
                await cancelled(task)
    return 0
