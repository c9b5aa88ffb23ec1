"""Resource usage: cgroup files read as cAdvisor reads them, and the Summary API the
agent serves from two samples of the runtime's stats."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelite.agent.stats import Sample, StatsCollector
from kubelite.runtime import usage
from kubelite.runtime.base import ContainerConfig, SandboxConfig, Usage
from kubelite.runtime.cgroups import Hierarchies
from tests.agent.fakes import FakeRuntime, make_image


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_cgroup_usage_is_cpu_time_and_working_set(tmp_path: Path, layout: str) -> None:
    group = "kubelite/pod1"
    if layout == "v2":
        base = tmp_path / "unified" / group
        base.mkdir(parents=True)
        (base / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
        (base / "memory.current").write_text("10485760\n")
        (base / "memory.stat").write_text("anon 1\ninactive_file 4194304\nactive_file 2\n")
        h = Hierarchies("v2", (tmp_path / "unified",), tmp_path / "unified",
                        tmp_path / "unified", tmp_path / "unified")
    else:
        acct, memory = tmp_path / "cpuacct", tmp_path / "memory"
        (acct / group).mkdir(parents=True)
        (memory / group).mkdir(parents=True)
        (acct / "cpuacct.usage").write_text("0\n")
        (acct / group / "cpuacct.usage").write_text("2500000\n")
        (memory / group / "memory.usage_in_bytes").write_text("10485760\n")
        (memory / group / "memory.stat").write_text(
            "cache 1\ninactive_file 99\ntotal_inactive_file 4194304\n")
        h = Hierarchies("v1", (acct, memory), memory, tmp_path / "cpu", None)
    assert usage.read(h, group) == Usage(cpu_ns=2_500_000, memory_working_set=6291456)
    assert usage.read(h, "kubelite/gone") is None


async def test_summary_rates_cpu_over_two_samples() -> None:
    runtime = FakeRuntime()
    sb = await runtime.create_sandbox(SandboxConfig(pod_uid="u1", name="web", namespace="ns",
                                                    hostname="web"))
    cid = await runtime.create_container(sb, ContainerConfig(name="app", image=make_image(),
                                                             command=("sleep", "1")))
    await runtime.start_container(cid)
    collector = StatsCollector(runtime, node_name="n1")
    runtime.usage = {"": Usage(1_000_000_000, 50 << 20), sb.id: Usage(400_000_000, 8 << 20),
                     cid: Usage(300_000_000, 6 << 20)}
    await collector.sample()
    first = await collector.summary()
    # One sample is no rate yet: only the cumulative figure.
    assert "usageNanoCores" not in first["node"]["cpu"]
    assert first["node"]["cpu"]["usageCoreNanoSeconds"] == 1_000_000_000
    # As if the first sample had been taken two seconds ago.
    collector._samples = {k: (None, Sample(s.at - 2.0, s.usage))
                          for k, (_, s) in collector._samples.items()}
    runtime.usage = {"": Usage(2_000_000_000, 60 << 20), sb.id: Usage(600_000_000, 9 << 20),
                     cid: Usage(500_000_000, 7 << 20)}
    await collector.sample()
    summary = await collector.summary()
    node_cpu = summary["node"]["cpu"]["usageNanoCores"]
    assert 490_000_000 <= node_cpu <= 510_000_000  # 1 s of CPU over ~2 s: half a core
    assert summary["node"]["memory"]["workingSetBytes"] == 60 << 20
    [pod] = summary["pods"]
    assert pod["podRef"] == {"name": "web", "namespace": "ns", "uid": "u1"}
    assert 95_000_000 <= pod["cpu"]["usageNanoCores"] <= 105_000_000
    [c] = pod["containers"]
    assert c["name"] == "app" and c["memory"]["workingSetBytes"] == 7 << 20
