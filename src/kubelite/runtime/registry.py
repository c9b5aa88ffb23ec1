"""A client of the OCI distribution API (the Docker registry HTTP API v2).

Anonymous, basic and bearer-token access, chosen from the registry's
`WWW-Authenticate` challenge as Docker and containerd do; every manifest and
blob is checked against its digest. HTTPS first; plain HTTP only for
registries named insecure and for loopback hosts, as containerd allows.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import re
import ssl
from collections.abc import Iterable
from pathlib import Path

import aiohttp

from kubelite.runtime import oci
from kubelite.runtime.base import RegistryAuth
from kubelite.runtime.errors import ImagePullError, RegistryUnreachable
from kubelite.runtime.reference import Reference

_PARAM = re.compile(r'(\w+)="([^"]*)"')
_CHUNK = 1 << 20


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


class RegistryClient:
    def __init__(self, session: aiohttp.ClientSession, *, ssl_context: ssl.SSLContext | bool,
                 insecure: Iterable[str] = ()) -> None:
        self._session = session
        self._ssl = ssl_context
        self._insecure = frozenset(insecure)
        # host -> ("https://host" or "http://host", the ssl argument to use with it)
        self._base: dict[str, tuple[str, ssl.SSLContext | bool]] = {}
        self._authz: dict[tuple[str, str], str] = {}  # (host, repository) -> Authorization

    async def manifest(self, ref: Reference, obj: str, auth: list[RegistryAuth]
                       ) -> tuple[str, bytes, str]:
        """Media type, body and digest of manifest `obj` (tag or digest) of `ref`'s repository."""
        body, headers = await self._get(ref, f"manifests/{obj}", auth,
                                        {"Accept": oci.ACCEPT}, what=f"manifest {ref.name}:{obj}")
        digest = oci.sha256_digest(body)
        expected = obj if obj.startswith("sha256:") else headers.get("Docker-Content-Digest", "")
        if expected and expected != digest:
            raise ImagePullError(f"manifest of {ref} has digest {digest}, expected {expected}")
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        return media_type, body, digest

    async def blob_bytes(self, ref: Reference, digest: str, auth: list[RegistryAuth]) -> bytes:
        body, _ = await self._get(ref, f"blobs/{digest}", auth, {}, what=f"blob {digest}")
        if oci.sha256_digest(body) != digest:
            raise ImagePullError(f"blob {digest} of {ref.name} does not match its digest")
        return body

    async def blob_to_file(self, ref: Reference, digest: str, dest: Path,
                           auth: list[RegistryAuth]) -> int:
        """Stream blob `digest` into `dest`, verifying it; returns its size."""
        resp = await self._open(ref, f"blobs/{digest}", auth, {}, what=f"blob {digest}")
        sha = hashlib.sha256()
        size = 0
        try:
            with dest.open("wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(out.write, chunk)
        except aiohttp.ClientError as exc:
            raise ImagePullError(f"downloading blob {digest} of {ref.name}: {exc}") from exc
        finally:
            resp.release()
        if "sha256:" + sha.hexdigest() != digest:
            raise ImagePullError(f"blob {digest} of {ref.name} does not match its digest")
        return size

    async def _get(self, ref: Reference, path: str, auth: list[RegistryAuth],
                   headers: dict[str, str], *, what: str) -> tuple[bytes, dict[str, str]]:
        resp = await self._open(ref, path, auth, headers, what=what)
        try:
            return await resp.read(), dict(resp.headers)
        except aiohttp.ClientError as exc:
            raise ImagePullError(f"reading {what} from {ref.domain}: {exc}") from exc
        finally:
            resp.release()

    async def _open(self, ref: Reference, path: str, auth: list[RegistryAuth],
                    headers: dict[str, str], *, what: str) -> aiohttp.ClientResponse:
        base, tls = await self._base_url(ref.api_host)
        url = f"{base}/v2/{ref.path}/{path}"
        key = (ref.api_host, ref.path)
        resp = await self._send(url, headers, self._authz.get(key), tls)
        if resp.status == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.release()
            for authorization in await self._authorizations(ref, challenge, auth):
                resp = await self._send(url, headers, authorization, tls)
                if resp.status not in (401, 403):
                    self._authz[key] = authorization
                    break
                resp.release()
        if resp.status == 200:
            return resp
        try:
            text = (await resp.text(errors="replace"))[:300]
        except aiohttp.ClientError:
            text = ""  # the body of a challenge already answered is gone
        resp.release()
        if resp.status in (401, 403):
            raise ImagePullError(f"pull access denied for {ref.name}: {what}: unauthorized")
        if resp.status == 404:
            raise ImagePullError(f"{ref}: not found ({what}): {text.strip()}")
        raise ImagePullError(f"{ref}: registry answered {resp.status} for {what}: {text.strip()}")

    async def _send(self, url: str, headers: dict[str, str], authorization: str | None,
                    tls: ssl.SSLContext | bool) -> aiohttp.ClientResponse:
        all_headers = dict(headers)
        if authorization:
            all_headers["Authorization"] = authorization
        try:
            return await self._session.get(url, headers=all_headers, ssl=tls)
        except (aiohttp.ClientError, OSError) as exc:
            raise RegistryUnreachable(f"registry unreachable: {url}: {exc}") from exc

    async def _authorizations(self, ref: Reference, challenge: str,
                              auth: list[RegistryAuth]) -> list[str]:
        """Authorization values to try, in order, for this challenge and these credentials."""
        scheme, params = parse_challenge(challenge)
        out = [f"Bearer {a.token}" for a in auth if a.token]
        creds = [a for a in auth if a.username or a.password]
        if scheme == "basic":
            out += [_basic(a) for a in creds]
        elif scheme == "bearer" and params.get("realm"):
            for cred in [*creds, None]:
                token = await self._token(ref, params, cred)
                if token:
                    out.append(f"Bearer {token}")
                    break
        return out

    async def _token(self, ref: Reference, params: dict[str, str],
                     cred: RegistryAuth | None) -> str | None:
        query = {"scope": params.get("scope") or f"repository:{ref.path}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": _basic(cred)} if cred else {}
        try:
            async with self._session.get(params["realm"], params=query, headers=headers,
                                         ssl=self._ssl) as resp:
                if resp.status != 200:
                    return None
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise ImagePullError(f"token service {params['realm']}: {exc}") from exc
        return doc.get("token") or doc.get("access_token")

    async def _base_url(self, host: str) -> tuple[str, ssl.SSLContext | bool]:
        """HTTPS, unverified HTTPS for registries named insecure, or plain HTTP as a fallback
        for those and for loopback hosts (a certificate error on loopback stays an error)."""
        if host in self._base:
            return self._base[host]
        insecure = host in self._insecure
        chosen: tuple[str, ssl.SSLContext | bool] = (f"https://{host}", False if insecure
                                                     else self._ssl)
        if insecure or _is_loopback(host):
            try:
                async with self._session.get(f"{chosen[0]}/v2/", ssl=chosen[1]):
                    pass
            except aiohttp.ClientConnectorCertificateError:
                pass
            except (aiohttp.ClientError, OSError):
                chosen = (f"http://{host}", False)
        self._base[host] = chosen
        return chosen


def _basic(cred: RegistryAuth) -> str:
    raw = f"{cred.username}:{cred.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()
