"""A real Debian docker-registry on a loopback port, optionally with htpasswd basic auth,
TLS, or token auth served by a small token server of the test's own."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.ports import free_port


def self_signed(directory: Path, name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (directory / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry JWTs (RS256, x5c header) to clients that present user:pass."""

    def __init__(self, directory: Path, *, user: str, password: str) -> None:
        self.key, self.cert = self_signed(directory, "token")
        self.user, self.password = user, password
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        self.requests.append(dict(request.query))
        if request.headers.get("Authorization") != expected:
            return web.json_response({"details": "bad credentials"}, status=401)
        _, name, actions = request.query["scope"].split(":")
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(
            self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": "kubelite-test", "sub": self.user, "aud": request.query["service"],
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8),
                  "access": [{"type": "repository", "name": name,
                              "actions": actions.split(",")}]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return web.json_response({"token": f"{signing_input}.{_b64(signature)}"})


class Registry:
    def __init__(self, directory: Path, *, auth: str = "", tls: bool = False,
                 user: str = "kubelite", password: str = "s3cret") -> None:
        self.dir = directory
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.user, self.password = user, password
        self.auth, self.tls = auth, tls
        self.token: TokenServer | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        config: dict[str, Any] = {
            "version": 0.1, "log": {"level": "error"},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "data")}},
            "http": {"addr": self.host}}
        if self.tls:
            self_signed(self.dir, "registry")
            config["http"]["tls"] = {"certificate": str(self.dir / "registry.crt"),
                                     "key": str(self.dir / "registry.key")}
        if self.auth == "basic":
            hashed = subprocess.run(["htpasswd", "-Bbn", self.user, self.password], check=True,
                                    capture_output=True, text=True).stdout.strip()
            (self.dir / "htpasswd").write_text(hashed + "\n")
            config["auth"] = {"htpasswd": {"realm": "kubelite-test",
                                           "path": str(self.dir / "htpasswd")}}
        elif self.auth == "token":
            self.token = TokenServer(self.dir, user=self.user, password=self.password)
            await self.token.start()
            config["auth"] = {"token": {
                "realm": f"http://127.0.0.1:{self.token.port}/token", "service": "kubelite-reg",
                "issuer": "kubelite-test", "rootcertbundle": str(self.dir / "token.crt")}}
        (self.dir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        self._proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise RuntimeError("docker-registry did not start") from None
                await asyncio.sleep(0.05)

    async def push(self, archive: Path, name: str) -> None:
        argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
        if self.auth:
            argv += ["--dest-creds", f"{self.user}:{self.password}"]
        p = await asyncio.create_subprocess_exec(
            *argv, f"oci-archive:{archive}", f"docker://{self.host}/{name}",
            stderr=asyncio.subprocess.PIPE)
        _, err = await p.communicate()
        assert p.returncode == 0, err.decode()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.dir / "registry.crt"))

    async def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self.token is not None:
            await self.token.stop()


def have_registry_tools() -> str | None:
    for tool in ("docker-registry", "skopeo", "htpasswd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None
