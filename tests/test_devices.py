"""device_for_job: each parallel job on its own GPU with its share of the cores."""

from __future__ import annotations

import pytest

from lightyolo.devices import device_for_job


def test_each_job_gets_its_own_gpu_and_an_equal_share_of_the_cores():
    assert [device_for_job(k, 4, 16, 4) for k in range(4)] == [(f"cuda:{k}", 4) for k in range(4)]


def test_more_jobs_than_gpus_share_them_round_robin_and_threads_never_drop_to_zero():
    assert [device_for_job(k, 2, 3, 5)[0] for k in range(5)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert device_for_job(4, 2, 3, 5)[1] == 1


def test_later_cells_of_a_sweep_keep_consecutive_jobs_on_different_gpus():
    assert [device_for_job(k, 4, 32, 4)[0] for k in range(8, 12)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def test_without_gpus_jobs_run_on_the_cpu_splitting_the_cores():
    assert device_for_job(1, 0, 16, 3) == ("cpu", 5)


@pytest.mark.parametrize("args", [(-1, 1, 8, 2), (0, 1, 8, 0), (0, -1, 8, 1), (0, 1, 0, 1)])
def test_impossible_arguments_are_one_line_errors(args):
    with pytest.raises(ValueError, match="device_for_job"):
        device_for_job(*args)


def test_a_joblib_cell_with_device_auto_gets_its_share_through_the_settings(monkeypatch):
    from conftest import compose_config

    from lightyolo import settings
    from lightyolo.cpus import UsableCpus

    monkeypatch.setattr(settings, "usable_cpus", lambda: UsableCpus(affinity=8, quota=None))
    monkeypatch.setattr(settings.torch.cuda, "device_count", lambda: 0)
    resolved = settings.resolve(compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]))
    assert (resolved.execution.device, resolved.execution.threads) == ("cpu", 4)
    assert resolved.execution.threads_reason == "auto: 8 cores in the affinity mask, no cgroup quota, 2 parallel jobs"
    monkeypatch.setattr(settings.torch.cuda, "device_count", lambda: 2)
    config = settings.resolved_config(compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]))
    assert config["train"]["device"] == "cuda:0"  # job 0 of the sweep on the first GPU
    pinned = settings.resolve(
        compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.device=cpu", "train.threads=1"])
    )
    assert (pinned.execution.device, pinned.execution.threads) == ("cpu", 1)


def test_the_default_threads_follow_the_usable_cpus_not_the_hosts_cores(monkeypatch):
    from conftest import compose_config

    from lightyolo import settings
    from lightyolo.cpus import UsableCpus

    monkeypatch.setattr(settings, "usable_cpus", lambda: UsableCpus(affinity=8, quota=2.5))
    resolved = settings.resolve(compose_config([]))
    assert resolved.execution.threads == 3
    assert resolved.execution.threads_reason == "auto: 8 cores in the affinity mask, cgroup quota 2.5 CPUs"


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5", "true"])
def test_a_bad_thread_count_is_one_line_naming_the_key(value):
    from conftest import compose_config

    from lightyolo import settings

    with pytest.raises(ValueError, match=r"^train\.threads.*expected auto or an integer >= 1"):
        settings.resolve(compose_config([f"train.threads={value}"]))
