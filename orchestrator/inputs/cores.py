"""How many CPUs this process may really use: affinity and cgroup quotas included.

``os.cpu_count()`` counts the machine's CPUs; a container limited to 2 of 64, or a
process pinned to some of them, can use fewer. The smallest of these wins:
  * ``os.sched_getaffinity(0)``: the CPUs this process may be scheduled on;
  * cgroup v2 ``cpu.max`` ("quota period", or "max"), for this process's cgroup;
  * cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: no quota).
Each is read from files, so a test can point ``root`` at a folder of its own.
"""
from __future__ import annotations

import os
from pathlib import Path


def _cgroup_paths(root: Path, proc_cgroup: Path) -> tuple[list[Path], list[Path]]:
    """Candidate folders for this process's cgroup, v2 and v1 (cpu controller)."""
    v2, v1 = [], []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":
            v2 += [root / rel, root / "unified" / rel, root]
        elif "cpu" in controllers.split(","):
            v1 += [root / "cpu" / rel, root / "cpu,cpuacct" / rel, root / "cpu"]
    return v2 or [root], v1 or [root / "cpu"]


def cgroup_quota(root: str | os.PathLike = "/sys/fs/cgroup",
                 proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> float | None:
    """CPUs the cgroup quota allows, or None when there is no quota."""
    v2, v1 = _cgroup_paths(Path(root), Path(proc_cgroup))
    for folder in v2:
        try:
            text = (folder / "cpu.max").read_text().split()
        except OSError:
            continue
        if len(text) >= 2 and text[0] != "max":
            try:
                return float(text[0]) / float(text[1])
            except (ValueError, ZeroDivisionError):
                return None
        return None
    for folder in v1:
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def local_cores(root: str | os.PathLike = "/sys/fs/cgroup",
                proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> tuple[float, str]:
    """(CPUs this process may use, where that number came from)."""
    try:
        n, source = float(len(os.sched_getaffinity(0))), "CPU affinity"
    except (AttributeError, OSError):  # not on Linux
        n, source = float(os.cpu_count() or 1), "os.cpu_count()"
    quota = cgroup_quota(root, proc_cgroup)
    if quota is not None and quota < n:
        n, source = quota, "cgroup CPU quota"
    return max(n, 1e-3), source


def cgroup_usage_s(root: str | os.PathLike = "/sys/fs/cgroup",
                   proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> float | None:
    """CPU seconds this process's cgroup has used (v2 ``cpu.stat`` usage_usec, v1 ``cpuacct.usage``)."""
    v2, v1 = _cgroup_paths(Path(root), Path(proc_cgroup))
    for folder in v2:
        try:
            for line in (folder / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except (OSError, ValueError):
            continue
    # cpuacct.usage is the cpuacct controller's: mounted with cpu ("cpu,cpuacct"), or on its own
    cpu = Path(root) / "cpu"
    for folder in [*v1, *(Path(root) / "cpuacct" / f.relative_to(cpu) for f in v1 if f.is_relative_to(cpu))]:
        try:
            return int((folder / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            continue
    return None


def busy_reader():
    """A function returning the CPU seconds the CPUs this process may use have been busy, whoever
    used them (differences of two readings are what count): under a cgroup quota, the cgroup's
    own usage (its quota is what it shares); else the busy time of the CPUs of its affinity, from
    the kernel's per-CPU counters (about 30 us a reading). Which one is chosen once, here."""
    import psutil

    if cgroup_quota() is not None and cgroup_usage_s() is not None:
        return lambda: cgroup_usage_s() or 0.0
    try:
        mine = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        mine = None

    def busy() -> float:
        per_cpu = psutil.cpu_times(percpu=True)
        chosen = [per_cpu[i] for i in mine if i < len(per_cpu)] if mine else per_cpu
        # Linux counts a guest's time in user and nice already; idle, iowait and steal are not busy
        return sum(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
                   + getattr(t, "softirq", 0.0) for t in chosen)

    return busy
