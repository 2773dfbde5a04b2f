"""How many CPUs this process may really use: its affinity mask and its cgroup's CPU quota.

`os.cpu_count()` is the host's core count. A container, a SLURM job or `taskset` gives a
process fewer: the affinity mask limits which cores it may run on, the cgroup quota
(`cpu.max` in cgroup v2, `cpu.cfs_quota_us / cpu.cfs_period_us` in v1) how much CPU time it
gets per period. torch's default intra-op thread count follows the host; with more threads
than usable CPUs, every parallel region waits for descheduled siblings (docs/threads.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class UsableCpus:
    affinity: int  # cores in the affinity mask
    quota: float | None  # the tightest cgroup CPU quota in cores (None: no quota)

    @property
    def count(self) -> int:
        """Whole CPUs this process may use: the affinity mask, capped by the quota rounded up."""
        if self.quota is None:
            return self.affinity
        return max(1, min(self.affinity, math.ceil(self.quota)))

    def describe(self) -> str:
        quota = "no cgroup quota" if self.quota is None else f"cgroup quota {self.quota:g} CPUs"
        return f"{self.affinity} cores in the affinity mask, {quota}"


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> UsableCpus:
    """The CPUs this process may use now (affinity mask and cgroup quota)."""
    return UsableCpus(affinity=len(os.sched_getaffinity(0)), quota=cgroup_cpu_quota(cgroup_root, proc_cgroup))


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota, in CPUs, over this process's cgroup and its ancestors (v2 or v1);
    None when there is none or the files cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: "0::/path"
            quotas += _quotas_along(cgroup_root, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            mount = next((cgroup_root / name for name in (controllers, "cpu", "cpu,cpuacct")
                          if (cgroup_root / name).is_dir()), None)
            if mount is not None:
                quotas += _quotas_along(mount, path, _v1_quota)
    return min(quotas) if quotas else None


def _quotas_along(mount: Path, path: str, read_quota) -> list[float]:
    """Quotas of the cgroup at `path` under `mount` and of each of its ancestors that exists
    there (inside a container the process's own path is often not mounted: the root is)."""
    directory = mount / path.strip("/")
    found = []
    while True:
        quota = read_quota(directory)
        if quota is not None:
            found.append(quota)
        if directory == mount or mount not in directory.parents:
            return found
        directory = directory.parent


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
