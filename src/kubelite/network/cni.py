"""CNI: running network plugins per the CNI specification 1.0 (as libcni does).

A plugin is an executable in CNI_PATH. It is told what to do by environment
variables (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS,
CNI_PATH), reads its network configuration as JSON on stdin, and answers with a
result (or an error object) as JSON on stdout.

A network configuration list runs its plugins in order for ADD and CHECK and
in reverse for DEL, each seeing the result of the one before as `prevResult`;
capabilities the plugin declares are filled from the runtime's arguments into
`runtimeConfig`. The ADD result is cached on disk, with the configuration it
was made with, because DEL and CHECK need both (also after the agent restarts,
when the node's configuration may have changed since).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
CNI_VERSION = "1.0.0"
DEFAULT_PATH = ("/usr/lib/cni", "/opt/cni/bin")
# A plugin that has not answered by then is stuck (a lock held by a dead process ...).
PLUGIN_TIMEOUT = 30.0


class CNIError(Exception):
    """A plugin failed: its error object (code, msg, details), or why it could not run."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        text = f"plugin {plugin} {command}: {msg}" + (f" ({details})" if details else "")
        super().__init__(text)
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details


@dataclass(frozen=True, slots=True)
class Attachment:
    """One container interface attached to a network: the arguments of every call."""

    container_id: str
    netns: str  # path of the network namespace; "" on DEL when it is gone
    ifname: str = "eth0"
    # CNI_ARGS; kubelet-style K8S_POD_* keys are sent with IgnoreUnknown=1.
    args: tuple[tuple[str, str], ...] = ()
    # Capability arguments (portMappings, ...) for plugins that declare them.
    capability_args: Mapping[str, Any] = field(default_factory=dict)


def result_ips(result: Obj) -> tuple[str, ...]:
    """The addresses of a CNI result, without prefix length, container interfaces first."""
    interfaces = result.get("interfaces") or []
    ips = sorted(result.get("ips") or [],
                 key=lambda ip: 0 if _in_sandbox(interfaces, ip.get("interface")) else 1)
    return tuple(ip["address"].split("/", 1)[0] for ip in ips if ip.get("address"))


def _in_sandbox(interfaces: list[Obj], index: int | None) -> bool:
    return index is not None and 0 <= index < len(interfaces) and \
        bool(interfaces[index].get("sandbox"))


class NetworkList:
    """A network configuration list (a .conflist document) and its result cache."""

    def __init__(self, conflist: Obj, *, cache_dir: Path,
                 path: tuple[str, ...] = DEFAULT_PATH, netns: str | None = None) -> None:
        if not conflist.get("name") or not conflist.get("plugins"):
            raise ValueError("a network configuration list needs a name and plugins")
        self.conflist = conflist
        self.cache_dir = cache_dir
        self.path = path
        # Plugins act on the current network namespace (the node's: the bridge, host
        # ports); a named one (under /var/run/netns) instead, for tests and tools.
        self.netns = netns

    @property
    def name(self) -> str:
        return str(self.conflist["name"])

    async def add(self, att: Attachment) -> Obj:
        """Attach; the result is cached before it is returned."""
        result: Obj | None = None
        for plugin in self.conflist["plugins"]:
            result = await self._invoke("ADD", self.conflist, plugin, att, result)
        assert result is not None
        await asyncio.to_thread(self._save, att, self.conflist, result)
        return result

    async def check(self, att: Attachment) -> None:
        """Raises CNIError when the attachment is not as ADD left it."""
        cached = await asyncio.to_thread(self._load, att.container_id, att.ifname)
        if cached is None:
            raise CNIError("libcni", "CHECK", 999, "no cached result for the container")
        conflist, prev = cached["config"], cached["result"]
        att = _with_cached_args(att, cached)
        for plugin in conflist["plugins"]:
            await self._invoke("CHECK", conflist, plugin, att, prev)

    async def delete(self, att: Attachment) -> None:
        """Detach with the configuration ADD used, then forget the cached result.
        Plugins tolerate what is already gone, so DEL may be repeated."""
        cached = await asyncio.to_thread(self._load, att.container_id, att.ifname)
        conflist = cached["config"] if cached else self.conflist
        prev = cached["result"] if cached else None
        if cached:
            att = _with_cached_args(att, cached)
        for plugin in reversed(conflist["plugins"]):
            await self._invoke("DEL", conflist, plugin, att, prev)
        await asyncio.to_thread(self._forget, att.container_id, att.ifname)

    def cached(self) -> list[Obj]:
        """Every cached attachment (blocking: call in a thread)."""
        out = []
        try:
            files = sorted(self.cache_dir.glob(f"{self.name}-*.json"))
        except OSError:
            return []
        for f in files:
            try:
                out.append(json.loads(f.read_bytes()))
            except (OSError, ValueError):
                continue
        return out

    def cached_result(self, container_id: str, ifname: str = "eth0") -> Obj | None:
        """The cached ADD result (blocking: call in a thread)."""
        doc = self._load(container_id, ifname)
        return doc["result"] if doc else None

    # -- the cache -------------------------------------------------------------------

    def _file(self, container_id: str, ifname: str) -> Path:
        return self.cache_dir / f"{self.name}-{container_id}-{ifname}.json"

    def _save(self, att: Attachment, conflist: Obj, result: Obj) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        doc = {"kind": "cniCacheV1", "containerId": att.container_id, "ifName": att.ifname,
               "networkName": self.name, "netns": att.netns, "cniArgs": list(att.args),
               "capabilityArgs": dict(att.capability_args), "config": conflist,
               "result": result}
        target = self._file(att.container_id, att.ifname)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(target)

    def _load(self, container_id: str, ifname: str) -> Obj | None:
        try:
            doc: Obj = json.loads(self._file(container_id, ifname).read_bytes())
        except (OSError, ValueError):
            return None
        return doc

    def _forget(self, container_id: str, ifname: str) -> None:
        self._file(container_id, ifname).unlink(missing_ok=True)

    # -- one plugin ------------------------------------------------------------------

    async def _invoke(self, command: str, conflist: Obj, plugin: Obj, att: Attachment,
                      prev: Obj | None) -> Obj:
        conf = dict(plugin)
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist.get("cniVersion", CNI_VERSION)
        if prev is not None:
            conf["prevResult"] = prev
        wanted = [cap for cap, on in (plugin.get("capabilities") or {}).items() if on]
        runtime_config = {cap: att.capability_args[cap] for cap in wanted
                          if cap in att.capability_args}
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        conf.pop("capabilities", None)
        result = await exec_plugin(conf["type"], command, conf, att, path=self.path,
                                   netns=self.netns)
        # A plugin that only acts (portmap, DEL, CHECK) passes the previous result on.
        return result or (prev or {})


async def exec_plugin(plugin_type: str, command: str, conf: Obj, att: Attachment, *,
                      path: tuple[str, ...] = DEFAULT_PATH, netns: str | None = None) -> Obj:
    """Run one plugin binary (in the named network namespace if given); its result,
    or {} when it printed none."""
    binary = _find(plugin_type, path)
    prefix = ["nsenter", f"--net=/var/run/netns/{netns}"] if netns else []
    args = ";".join(f"{k}={v}" for k, v in att.args)
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id,
           "CNI_NETNS": att.netns, "CNI_IFNAME": att.ifname, "CNI_ARGS": args,
           "CNI_PATH": os.pathsep.join(path)}
    try:
        proc = await asyncio.create_subprocess_exec(
            *prefix, binary, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
    except OSError as e:
        raise CNIError(plugin_type, command, 999, f"cannot run {binary}: {e}") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(conf).encode()),
                                          PLUGIN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CNIError(plugin_type, command, 999,
                       f"no answer within {PLUGIN_TIMEOUT:.0f}s") from None
    doc: Obj = {}
    if out.strip():
        try:
            doc = json.loads(out)
        except ValueError:
            doc = {"msg": out.decode(errors="replace").strip()}
    if proc.returncode != 0 or "code" in doc:
        raise CNIError(plugin_type, command, int(doc.get("code") or 999),
                       str(doc.get("msg") or err.decode(errors="replace").strip()
                           or f"exit status {proc.returncode}"),
                       str(doc.get("details") or ""))
    return doc


def _with_cached_args(att: Attachment, cached: Obj) -> Attachment:
    """The arguments ADD had (portmap finds its rules by the port mappings)."""
    return replace(att, args=att.args or tuple(tuple(a) for a in cached.get("cniArgs") or ()),
                   capability_args=att.capability_args or cached.get("capabilityArgs") or {})


def _find(plugin_type: str, path: tuple[str, ...]) -> str:
    if "/" in plugin_type:
        raise CNIError(plugin_type, "", 999, "plugin type must be a plain name")
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        if os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(plugin_type, "", 999, f"plugin not found in {os.pathsep.join(path)}")
