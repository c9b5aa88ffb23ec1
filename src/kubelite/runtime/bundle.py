"""The OCI runtime-spec config.json of one container, as containerd's CRI writes it:
containerd's default capabilities, masked and read-only /proc paths, no seccomp
profile, the pod's namespaces joined by path and the pod's files bind-mounted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from kubelite.runtime.base import ContainerConfig, Image, SecurityOptions
from kubelite.runtime.cgroups import Layout
from kubelite.runtime.errors import ContainerCreateError
from kubelite.runtime.sandbox import SandboxRecord

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
# Every capability of Linux 5.9 and later, in kernel order; "ALL" means these.
ALL_CAPS = tuple("CAP_" + n for n in (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE").split())
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def capabilities(sec: SecurityOptions) -> list[str]:
    if sec.privileged:
        return list(ALL_CAPS)

    def names(caps: tuple[str, ...]) -> set[str]:
        out = set()
        for cap in caps:
            cap = cap.upper()
            out |= set(ALL_CAPS) if cap == "ALL" else {cap if cap.startswith("CAP_")
                                                        else "CAP_" + cap}
        return out
    caps = set(DEFAULT_CAPS) - names(sec.capabilities_drop) | names(sec.capabilities_add)
    return [c for c in ALL_CAPS if c in caps]


def merge_env(image_env: tuple[str, ...], env: tuple[tuple[str, str], ...],
              hostname: str) -> list[str]:
    """Image env, then HOSTNAME, then the container's own, later values winning (containerd)."""
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    merged["HOSTNAME"] = hostname
    merged.update(env)
    return [f"{k}={v}" for k, v in merged.items()]


def _read_in_root(rootfs: Path, rel: str) -> str:
    """A file of the container's root, never followed through a symlink out of it."""
    path = rootfs
    for part in rel.strip("/").split("/"):
        path = path / part
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return ""
        except OSError:
            return ""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: Path, image: Image, sec: SecurityOptions) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) from the security context or the image's USER."""
    passwd = _table(_read_in_root(rootfs, "etc/passwd"))
    groups = _table(_read_in_root(rootfs, "etc/group"))
    user, _, group = image.user.partition(":")
    uid: int | None = sec.run_as_user
    gid: int | None = sec.run_as_group
    name = ""
    if uid is None:
        if not user or user.isdigit():
            uid = int(user or 0)
        else:
            entry = next((e for e in passwd if e[0] == user and len(e) > 3), None)
            if entry is None:
                raise ContainerCreateError(f"unable to find user {user}: no matching entries "
                                           "in passwd file")
            uid = int(entry[2])
    entry = next((e for e in passwd if len(e) > 3 and e[2] == str(uid)), None)
    if entry is not None:
        name = entry[0]
    if gid is None and group and sec.run_as_user is None:
        if group.isdigit():
            gid = int(group)
        else:
            found = next((g for g in groups if g[0] == group and len(g) > 2), None)
            if found is None:
                raise ContainerCreateError(f"unable to find group {group}")
            gid = int(found[2])
    if gid is None:
        gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    extra = {int(g[2]) for g in groups if name and len(g) > 3 and g[2].isdigit()
             and name in g[3].split(",")}
    extra |= set(sec.supplemental_groups)
    return uid, gid, sorted(extra - {gid})


def build_spec(*, config: ContainerConfig, image: Image, sandbox: SandboxRecord, rootfs: Path,
               args: list[str], cgroups_path: str, layout: Layout) -> dict[str, Any]:
    sec = config.security
    uid, gid, extra_gids = resolve_user(rootfs, image, sec)
    caps = capabilities(sec)
    sb = sandbox.config
    hostname = os.uname().nodename if sb.host_network else sb.hostname
    process: dict[str, Any] = {
        "terminal": config.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
        "args": args,
        "env": merge_env(image.env, config.env, hostname),
        "cwd": config.working_dir or image.working_dir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sec.no_new_privileges,
    }
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    for kind, path in (("network", sandbox.netns_path), ("ipc", sandbox.ipc_path),
                       ("uts", sandbox.uts_path)):
        if path:
            namespaces.append({"type": kind, "path": path})
    if not sb.host_pid:
        namespaces.append({"type": "pid", "path": sandbox.pid_path} if sandbox.pid_path
                          else {"type": "pid"})
    if layout == "v2":
        namespaces.append({"type": "cgroup"})
    resources: dict[str, Any] = {"devices": [{"allow": sec.privileged, "access": "rwm"}]}
    res = config.resources
    if res.memory_limit_bytes:
        resources["memory"] = {"limit": res.memory_limit_bytes}
    cpu: dict[str, int] = {}
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota_us:
        cpu |= {"quota": res.cpu_quota_us, "period": res.cpu_period_us}
    if cpu:
        resources["cpu"] = cpu
    if res.pids_limit:
        resources["pids"] = {"limit": res.pids_limit}
    linux: dict[str, Any] = {"namespaces": namespaces, "resources": resources,
                             "cgroupsPath": cgroups_path}
    if not sec.privileged:
        linux |= {"maskedPaths": list(MASKED_PATHS), "readonlyPaths": list(READONLY_PATHS)}
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": str(rootfs), "readonly": sec.read_only_rootfs},
        "mounts": _mounts(config, sandbox),
        "linux": linux,
    }
    if sandbox.uts_path:
        spec["hostname"] = hostname
    return spec


def _mounts(config: ContainerConfig, sandbox: SandboxRecord) -> list[dict[str, Any]]:
    sysfs_opts = ["nosuid", "noexec", "nodev"] + ([] if config.security.privileged else ["ro"])
    out: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sysfs_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/dev/shm", "type": "bind",
         "source": "/dev/shm" if sandbox.config.host_ipc else sandbox.file("shm"),
         "options": ["rbind", "nosuid", "nodev", "noexec"]},
    ]
    own = {m.destination for m in config.mounts}
    for name in ("hosts", "hostname", "resolv.conf"):
        if f"/etc/{name}" not in own:
            out.append({"destination": f"/etc/{name}", "type": "bind",
                        "source": sandbox.file(name), "options": ["rbind", "rprivate", "rw"]})
    for m in config.mounts:
        out.append({"destination": m.destination, "type": m.type, "source": m.source,
                    "options": list(m.options)})
    return out
