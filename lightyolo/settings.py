"""A composed config resolved once into typed settings (design.md, "Where the new parts go").

`resolve(cfg)` is the only place that decides the run's paths and execution details: the
launch directory, absolute `dataset.root` / `dataset.yaml` / `model.weights`, the tracking URI's default,
the torch threads of a parallel job and the chosen group options. The pipeline and the CLIs
read the result, not raw config keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from lightyolo.configs import DEFAULT_HEAD, GROUPS
from lightyolo.data.image_cache import cache_mode
from lightyolo.data.loader import resolve_workers
from lightyolo.cpus import UsableCpus, usable_cpus
from lightyolo.devices import device_for_job
from lightyolo.tracking import HEARTBEAT_TIMEOUT_S, default_tracking_uri
from lightyolo.train.settings import TrainSettings


@dataclass(frozen=True)
class RunIdentity:
    """Which cell this is and where it is recorded (its identity, which needs the dataset's
    content, is `identity.cell_identity`, computed once the dataset is read)."""

    experiment: str
    seed: int
    rerun: bool
    choices: dict[str, str]  # group → chosen option (hydra.runtime.choices)
    tracking_uri: str
    launch_dir: Path
    heartbeat_timeout_s: float  # a RUNNING run silent for longer is taken to be cut off
    evaluate_only: bool = False  # train.epochs=0: the run evaluates weights, it trains nothing

    @property
    def name(self) -> str:
        """The MLflow run name: `<backbone>-<neck>-<operator>[-<head>]-s<seed>`, `-eval` added
        for a run that only evaluates (`train.epochs=0`), so it is never taken for a trained cell."""
        return run_name(self.choices, self.seed) + ("-eval" if self.evaluate_only else "")


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how the work runs (none of it changes the cell's identity)."""

    device: str  # auto | cpu | cuda | cuda:N (checked when the model is built)
    threads: int  # torch intra-op threads
    threads_reason: str  # why that many (logged with the run)
    workers: int
    cache_images: str | None  # ram | disk | None


@dataclass(frozen=True)
class EvalSettings:
    """`eval`: the COCO evaluation of the val split."""

    conf_thres: float
    iou_thres: float
    max_det: int
    batch_size: int
    rect: bool


@dataclass(frozen=True)
class BenchSettings:
    """`bench.warmup` / `bench.iters`: the in-process quick latency figure (the bench stage's
    own keys, `bench.after_sweep` and `bench.stage`, are read by the sweep callback)."""

    warmup: int
    iters: int


@dataclass(frozen=True)
class Settings:
    """Everything one run needs, resolved from the composed config."""

    run: RunIdentity
    execution: ExecutionSettings
    train: TrainSettings
    eval: EvalSettings
    bench: BenchSettings
    scale: str
    weights: Path | None
    augment: dict[str, float]
    # The resolved config (absolute paths, the URI filled in): logged, hashed, and the
    # source of the `_target_` nodes (dataset, backbone, neck, operator) to instantiate.
    config: dict[str, Any] = field(repr=False)


def run_name(choices: Mapping[str, str], seed: int) -> str:
    """`c3-pan-conv-s0`; a head other than the default joins the name (`c3-pan-conv-v8-s0`)."""
    head = choices.get("head", DEFAULT_HEAD)
    cell = [choices["backbone"], choices["neck"], choices["operator"], *([head] if head != DEFAULT_HEAD else [])]
    return f"{'-'.join(cell)}-s{seed}"


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """The option chosen in each config group (`hydra.runtime.choices`)."""
    return {group: str(_hydra_node(cfg).runtime.choices[group]) for group in GROUPS}


def launch_dir(cfg: DictConfig) -> Path:
    """The directory the command was started from (`hydra.runtime.cwd`)."""
    return Path(str(_hydra_node(cfg).runtime.cwd))


def _hydra_node(cfg: DictConfig) -> DictConfig:
    if "hydra" in cfg:  # composed with return_hydra_config=True (the tests)
        return cfg.hydra
    if HydraConfig.initialized():  # inside @hydra.main
        return HydraConfig.get()
    raise ValueError(
        "config has no hydra.runtime.choices: compose it with return_hydra_config=True "
        "or run it through `python -m lightyolo.run`"
    )


def tracking_uri(configured: str | None, base_dir: str | Path) -> str:
    """The MLflow store: `configured`, else `sqlite:///<absolute base_dir>/mlflow.db`."""
    return configured or default_tracking_uri(base_dir)


def absolute_path(path: str | None, base: Path) -> str | None:
    """A user path resolved against the launch directory (jobs may run elsewhere)."""
    if not path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def joblib_job_share(launcher: Mapping[str, Any], job_num: int, cores: int) -> tuple[str, int, int] | None:
    """A parallel joblib job's (device, threads, jobs at a time): its own GPU when there are
    GPUs, and an equal share of the `cores` this process may use
    (`lightyolo.devices.device_for_job`); None for other launchers."""
    if "joblib" not in str(launcher.get("_target_", "")):
        return None
    jobs = int(launcher.get("n_jobs") or 1)
    jobs = cores if jobs < 0 else max(jobs, 1)
    return (*device_for_job(job_num, torch.cuda.device_count(), cores, jobs), jobs)


def thread_choice(configured: Any, cpus: UsableCpus, share: tuple[str, int, int] | None) -> tuple[int, str]:
    """`train.threads` as (count, why): an integer as given; `auto` (or null) the CPUs this
    process may use (affinity mask and cgroup quota, not the host's cores), split among a
    joblib sweep's parallel jobs."""
    if configured not in (None, "auto"):
        if isinstance(configured, bool) or not isinstance(configured, int) or configured < 1:
            raise ValueError(f"train.threads: {configured!r}, expected an integer >= 1 or auto")
        return configured, "train.threads"
    if share is not None:
        _, threads, jobs = share
        return threads, f"auto: {cpus.describe()}, {jobs} parallel jobs"
    return cpus.count, f"auto: {cpus.describe()}"


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without Hydra's own node."""
    if "hydra" in cfg:  # Hydra's node holds job-time interpolations: drop it unresolved
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """`plain_config` with absolute paths, the tracking URI and a joblib job's device and threads filled in."""
    hydra = _hydra_node(cfg)
    base = launch_dir(cfg)
    config = plain_config(cfg)
    for key in ("root", "yaml"):  # a data.yaml path, like a root, is the user's (launch dir)
        if key in config["dataset"]:
            config["dataset"][key] = absolute_path(config["dataset"][key], base)
    config["model"]["weights"] = absolute_path(config["model"]["weights"], base)
    config["mlflow"]["tracking_uri"] = tracking_uri(config["mlflow"]["tracking_uri"], base)
    share = joblib_job_share(hydra.launcher, int(hydra.job.get("num") or 0), usable_cpus().count)
    if share is not None and config["train"]["device"] == "auto":
        config["train"]["device"] = share[0]
    return config


def resolve(cfg: DictConfig) -> Settings:
    """The typed settings of a composed config (from `@hydra.main` or Hydra's compose API)."""
    config = resolved_config(cfg)
    train = config["train"]
    cpus = usable_cpus()
    share = joblib_job_share(_hydra_node(cfg).launcher, int(_hydra_node(cfg).job.get("num") or 0), cpus.count)
    threads, threads_reason = thread_choice(train["threads"], cpus, share)
    return Settings(
        run=RunIdentity(
            experiment=config["experiment"],
            seed=int(config["seed"]),
            rerun=bool(config.get("rerun")),
            choices=group_choices(cfg),
            tracking_uri=config["mlflow"]["tracking_uri"],
            launch_dir=launch_dir(cfg),
            heartbeat_timeout_s=float(config["mlflow"].get("heartbeat_timeout_s") or HEARTBEAT_TIMEOUT_S),
            evaluate_only=train["epochs"] == 0,
        ),
        execution=ExecutionSettings(
            device=str(train["device"]),
            threads=threads,
            threads_reason=threads_reason,
            # auto: the cores this job may use (its joblib share, else the machine's), at most 8
            workers=resolve_workers(train["workers"], cores=threads),
            cache_images=cache_mode(train["cache_images"]),
        ),
        train=TrainSettings.from_config(train),
        eval=EvalSettings(**config["eval"]),
        bench=BenchSettings(warmup=config["bench"]["warmup"], iters=config["bench"]["iters"]),
        scale=str(config["model"]["scale"]),
        weights=Path(config["model"]["weights"]) if config["model"]["weights"] else None,
        augment=dict(train["augment"]),
        config=config,
    )
