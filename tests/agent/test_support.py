"""Background events, the serving certificate, the crash back-off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cryptography import x509

from kubelite.agent import certgen
from kubelite.agent.backoff import Backoff
from kubelite.agent.events import QueuedRecorder


class SlowRecorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def record(self, involved: Any, type: str, reason: str, message: str, *,
                     field_path: str | None = None) -> None:
        await asyncio.sleep(0.01)
        self.sent.append(reason)


async def test_queued_events_keep_order_and_drop_when_full() -> None:
    slow = SlowRecorder()
    queued = QueuedRecorder(slow, size=3)  # type: ignore[arg-type]
    queued.start()
    for reason in ("A", "B", "C", "D", "E"):
        await queued.record({}, "Normal", reason, "m")
    await queued.stop()
    assert slow.sent[:3] == ["A", "B", "C"] and len(slow.sent) <= 4


def test_certificate_is_kept_until_its_names_change(tmp_path: Path) -> None:
    cert, _key = certgen.write(tmp_path, name="n1", dns=["localhost", "n1"], ips=["127.0.0.1"],
                               ca_cert=None, ca_key=None)
    first = cert.read_bytes()
    certgen.write(tmp_path, name="n1", dns=["localhost", "n1"], ips=["127.0.0.1"],
                  ca_cert=None, ca_key=None)
    assert cert.read_bytes() == first
    certgen.write(tmp_path, name="n1", dns=["localhost", "n1"], ips=["127.0.0.1", "10.0.0.5"],
                  ca_cert=None, ca_key=None)
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1",
                                                                          "10.0.0.5"}
    assert (tmp_path / "agent.key").stat().st_mode & 0o777 == 0o600


def test_backoff_doubles_to_cap_and_resets_after_quiet() -> None:
    now = [1000.0]
    b = Backoff(initial=10, cap=40, clock=lambda: now[0])
    assert b.remaining("c", now[0]) == 0
    b.next("c", now[0])
    assert b.remaining("c", now[0]) == 10
    delays = []
    for _ in range(4):
        now[0] += 30
        b.next("c", now[0])
        delays.append(b.delay("c"))
    assert delays == [20, 40, 40, 40]
    now[0] += 81  # more than twice the cap without a failure
    b.next("c", now[0])
    assert b.delay("c") == 10
