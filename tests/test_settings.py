"""settings.resolve: the config's defaults become typed execution settings, once."""

from __future__ import annotations

import pytest

from conftest import compose_config

from lightyolo import settings


def test_the_defaults_resolve_workers_auto_and_the_ram_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightyolo.cpus import UsableCpus

    monkeypatch.setattr(settings, "usable_cpus", lambda: UsableCpus(affinity=2, quota=None))
    resolved = settings.resolve(compose_config([]))
    assert resolved.execution.workers == 2  # auto: the cores available, at most 8
    assert resolved.execution.cache_images == "ram"


@pytest.mark.parametrize(("value", "mode"), [("disk", "disk"), ("false", None), ("true", "ram")])
def test_every_cache_mode_survives_resolution(value: str, mode: str | None) -> None:
    assert settings.resolve(compose_config([f"train.cache_images={value}"])).execution.cache_images == mode


def test_a_joblib_jobs_auto_workers_stay_within_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightyolo.cpus import UsableCpus

    monkeypatch.setattr(settings, "usable_cpus", lambda: UsableCpus(affinity=8, quota=None))
    resolved = settings.resolve(compose_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]))
    assert (resolved.execution.threads, resolved.execution.workers) == (2, 2)


def test_a_bad_worker_count_is_one_line_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"train.workers: 'many'"):
        settings.resolve(compose_config(["train.workers=many"]))
