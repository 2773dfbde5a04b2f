"""The CPUs a process may use: its affinity mask and its cgroup's quota (v1 and v2 layouts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightyolo.cpus import UsableCpus, cgroup_cpu_quota, usable_cpus


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_tightest_along_the_path(tmp_path):
    _write(tmp_path / "proc", "0::/slurm/job_7/step_0\n")
    _write(tmp_path / "cg" / "cpu.max", "max 100000\n")
    _write(tmp_path / "cg" / "slurm" / "job_7" / "cpu.max", "150000 100000\n")
    _write(tmp_path / "cg" / "slurm" / "job_7" / "step_0" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc") == 1.5


def test_cgroup_v1_quota_reads_cfs_quota_over_period(tmp_path):
    _write(tmp_path / "proc", "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    _write(tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    _write(tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc") == 3.0


def test_no_quota_files_mean_no_quota(tmp_path):
    _write(tmp_path / "proc", "0::/\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc") is None
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "missing") is None


@pytest.mark.parametrize(("affinity", "quota", "count"), [(8, None, 8), (8, 2.5, 3), (2, 6.0, 2), (4, 0.2, 1)])
def test_usable_count_is_the_affinity_capped_by_the_quota_rounded_up(affinity, quota, count):
    assert UsableCpus(affinity, quota).count == count


def test_a_process_pinned_to_one_core_gets_one_thread_by_default():
    """A real process with a one-core affinity mask (what taskset or a container sets)
    resolves train.threads=auto to 1 thread, and says why."""
    script = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        "from conftest import compose_config; from lightyolo.settings import resolve;"
        "e = resolve(compose_config([])).execution; print(e.threads, '|', e.threads_reason)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    threads, reason = out.stdout.strip().split(" | ")
    assert threads == "1"
    assert reason.startswith("auto: 1 cores in the affinity mask")


def test_usable_cpus_here_is_within_the_affinity_mask():
    assert 1 <= usable_cpus().count <= len(os.sched_getaffinity(0))


def test_importing_lightyolo_makes_openmp_threads_sleep_while_waiting():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", "import lightyolo, os; print(os.environ['OMP_WAIT_POLICY'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
