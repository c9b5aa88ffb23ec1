"""KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1): profiles selected by
schedulerName, each with plugins enabled or disabled per extension point (or in
`multiPoint`), score weights, plugin args and percentageOfNodesToScore.

Deliberate difference: a plugin enabled at one extension point that is not in the
default set runs at every point it implements (as if enabled in multiPoint);
disabling works per point, or everywhere with multiPoint / "*".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubelite.scheduler.plugins import BUILT_IN, DEFAULT_PLUGINS, REGISTRY, PluginContext
from kubelite.scheduler.plugins.defaultpreemption import DefaultPreemption
from kubelite.scheduler.runtime import Framework

Obj = dict[str, Any]
API_VERSION = "kubescheduler.config.k8s.io/v1"
KIND = "KubeSchedulerConfiguration"
DEFAULT_SCHEDULER = "default-scheduler"
POINTS = ("preEnqueue", "queueSort", "preFilter", "filter", "postFilter", "preScore", "score",
          "reserve", "permit", "preBind", "bind", "postBind")


class ConfigError(ValueError):
    """The configuration file is malformed or names an unknown plugin."""


@dataclass(frozen=True)
class Profile:
    scheduler_name: str = DEFAULT_SCHEDULER
    # (plugin name, score weight) in run order
    plugins: tuple[tuple[str, int], ...] = DEFAULT_PLUGINS
    disabled: dict[str, frozenset[str]] = field(default_factory=dict)
    args: dict[str, Obj] = field(default_factory=dict)
    percentage_of_nodes_to_score: int | None = None


@dataclass(frozen=True)
class SchedulerConfiguration:
    profiles: tuple[Profile, ...] = (Profile(),)
    percentage_of_nodes_to_score: int = 0
    pod_initial_backoff_seconds: float = 1.0
    pod_max_backoff_seconds: float = 10.0


def _names(section: Obj | None, key: str) -> list[Obj]:
    return list((section or {}).get(key) or [])


def _profile(raw: Obj) -> Profile:
    name = raw.get("schedulerName") or DEFAULT_SCHEDULER
    plugins = list(DEFAULT_PLUGINS)
    sections = raw.get("plugins") or {}
    unknown = set(sections) - {*POINTS, "multiPoint"}
    if unknown:
        raise ConfigError(f"profile {name}: unknown extension point(s) {sorted(unknown)}")
    multi = sections.get("multiPoint") or {}
    off_everywhere = {p.get("name") for p in _names(multi, "disabled")}
    if "*" in off_everywhere:
        plugins = []
    plugins = [(n, w) for n, w in plugins if n not in off_everywhere]
    disabled: dict[str, frozenset[str]] = {}
    weights: dict[str, int] = {}
    for point in ("multiPoint", *POINTS):
        section = sections.get(point) or {}
        off = {p.get("name") for p in _names(section, "disabled")}
        if point != "multiPoint" and off:
            if "*" in off:
                off = {n for n, _ in plugins}
            disabled[point] = frozenset(off)
        for entry in _names(section, "enabled"):
            plugin = entry.get("name")
            if plugin not in REGISTRY and plugin not in BUILT_IN:
                raise ConfigError(f"profile {name}: unknown plugin {plugin!r}")
            if entry.get("weight") is not None:
                weights[plugin] = int(entry["weight"])
            if plugin in REGISTRY and all(n != plugin for n, _ in plugins):
                plugins.append((plugin, 1))
            if point != "multiPoint" and plugin in disabled.get(point, ()):
                disabled[point] = disabled[point] - {plugin}
    plugins = [(n, weights.get(n, w) or 1) for n, w in plugins]
    args = {}
    for entry in raw.get("pluginConfig") or []:
        if entry.get("name") not in REGISTRY:
            raise ConfigError(f"profile {name}: pluginConfig for unknown plugin "
                              f"{entry.get('name')!r}")
        args[entry["name"]] = dict(entry.get("args") or {})
    percentage = raw.get("percentageOfNodesToScore")
    return Profile(name, tuple(plugins), disabled, args,
                   int(percentage) if percentage is not None else None)


def parse_config(raw: Obj) -> SchedulerConfiguration:
    if raw.get("apiVersion") != API_VERSION or raw.get("kind") != KIND:
        raise ConfigError(f"expected apiVersion {API_VERSION} kind {KIND}, got "
                          f"{raw.get('apiVersion')} {raw.get('kind')}")
    profiles = tuple(_profile(p) for p in raw.get("profiles") or [{}])
    names = [p.scheduler_name for p in profiles]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate schedulerName in profiles: {names}")
    percentage = int(raw.get("percentageOfNodesToScore") or 0)
    if not 0 <= percentage <= 100:
        raise ConfigError("percentageOfNodesToScore must be between 0 and 100")
    return SchedulerConfiguration(
        profiles=profiles, percentage_of_nodes_to_score=percentage,
        pod_initial_backoff_seconds=float(raw.get("podInitialBackoffSeconds") or 1),
        pod_max_backoff_seconds=float(raw.get("podMaxBackoffSeconds") or 10))


def load_config(path: Path) -> SchedulerConfiguration:
    """Read a KubeSchedulerConfiguration file (blocking: call it from a thread)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a KubeSchedulerConfiguration")
    return parse_config(raw)


def build_framework(profile: Profile, config: SchedulerConfiguration,
                    context: PluginContext) -> Framework:
    plugins = []
    for name, _ in profile.plugins:
        ctx = PluginContext(context.handle, context.cache, context.client, context.recorder,
                            profile.args.get(name, {}))
        plugin = REGISTRY[name](ctx)
        if plugin is not None:
            plugins.append(plugin)
    percentage = profile.percentage_of_nodes_to_score
    framework = Framework(
        profile.scheduler_name, plugins, weights=dict(profile.plugins),
        percentage_of_nodes_to_score=config.percentage_of_nodes_to_score
        if percentage is None else percentage, disabled=profile.disabled)
    for plugin in plugins:
        if isinstance(plugin, DefaultPreemption):
            plugin.framework = framework
    return framework
