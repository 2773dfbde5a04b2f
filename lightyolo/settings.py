"""A composed config resolved once into typed settings (docs/design.md, "Layout").

`resolve(cfg)` is the only place that decides the run's paths and execution details: the
launch directory, absolute `dataset.root` / `dataset.yaml` / `model.weights`, the tracking URI's default,
the torch threads of a parallel job and the chosen group options. The pipeline and the CLIs
read the result, not raw config keys.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
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
from lightyolo.store.health import STORE_CHECK_TIMEOUT_S
from lightyolo.store.locks import default_tracking_uri
from lightyolo.store.ownership import HEARTBEAT_TIMEOUT_S
from lightyolo.train.settings import TrainSettings


@dataclass(frozen=True)
class RunIdentity:
    """Which cell this is and where it is recorded (its identity, which needs the dataset's
    content, is `identity.cell_identity`, computed once the dataset is read)."""

    experiment: str
    seed: int
    rerun: bool
    choices: dict[str, str]  # group → chosen option (hydra.runtime.choices)
    recipe: str  # the train group's choice (conf/train/)
    tracking_uri: str
    launch_dir: Path
    heartbeat_timeout_s: float  # a RUNNING run silent for longer is taken to be cut off
    evaluate_only: bool = False  # train.epochs=0: the run evaluates weights, it trains nothing
    store_check_timeout_s: float = STORE_CHECK_TIMEOUT_S  # how long the store has to answer the first look
    checkpoint_to_store: bool = True  # copy last.pt/best.pt onto the run each epoch (cell_checkpoints.py)

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
class QuickLatencySettings:
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
    bench: QuickLatencySettings
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


ENV_URI_PREFIX = "env:"  # `mlflow.tracking_uri=env:NAME`: the URI is environment variable NAME's value


def tracking_uri(configured: str | None, base_dir: str | Path) -> str:
    """The MLflow store: `configured`; `env:NAME` (conf/tracking/server.yaml) the value of
    environment variable NAME, ValueError in one line when it is unset; else (null)
    `sqlite:///<absolute base_dir>/mlflow.db`."""
    if configured and str(configured).startswith(ENV_URI_PREFIX):
        name = str(configured)[len(ENV_URI_PREFIX):]
        value = os.environ.get(name, "").strip()
        if not value:
            raise ValueError(f"mlflow.tracking_uri={configured}: environment variable {name} is not set "
                             "(expected the tracking server's URL, e.g. http://host:5000)")
        return value
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
    if configured not in (None, "auto"):  # an integer >= 1 (validate_config checked it)
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
    validate_config(config)
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
            recipe=str(_hydra_node(cfg).runtime.choices.get("train", "")),
            tracking_uri=config["mlflow"]["tracking_uri"],
            launch_dir=launch_dir(cfg),
            heartbeat_timeout_s=float(config["mlflow"].get("heartbeat_timeout_s") or HEARTBEAT_TIMEOUT_S),
            evaluate_only=train["epochs"] == 0,
            store_check_timeout_s=float(config["mlflow"].get("store_check_timeout_s") or STORE_CHECK_TIMEOUT_S),
            checkpoint_to_store=bool(config["mlflow"].get("checkpoint_to_store", True)),
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
        bench=QuickLatencySettings(warmup=config["bench"]["warmup"], iters=config["bench"]["iters"]),
        scale=str(config["model"]["scale"]),
        weights=Path(config["model"]["weights"]) if config["model"]["weights"] else None,
        augment=dict(train["augment"]),
        config=config,
    )


# --- Every value checked up front (issue 24): one line naming the key and what is expected --


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


def _number_in(low: float, high: float | None = None, *, open_low: bool = False) -> tuple[Callable[[Any], bool], str]:
    def check(v: Any) -> bool:
        return _is_number(v) and (v > low if open_low else v >= low) and (high is None or v <= high)

    bounds = f"> {low:g}" if open_low else f">= {low:g}"
    return check, f"a number {bounds}" + (f" and <= {high:g}" if high is not None else "")


_BOOL = ((lambda v: isinstance(v, bool)), "true or false")
_PROBABILITY = _number_in(0.0, 1.0)
_NON_NEGATIVE = _number_in(0.0)
_POSITIVE = _number_in(0.0, open_low=True)

# (dotted key, check, expectation); a key absent from the config is not checked (a plugin's
# dataset yaml may leave out augmentation keys it does not use).
VALUE_CHECKS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", (lambda v: _is_int(v)), "an integer"),
    ("train.epochs", *_int_at_least(0)),
    ("train.batch_size", *_int_at_least(1)),
    ("train.nominal_batch_size", *_int_at_least(1)),
    ("train.img_size", (lambda v: _is_int(v) and v >= 32 and v % 32 == 0),
     "a positive multiple of 32 (the largest stride)"),
    ("train.threads", (lambda v: v in (None, "auto") or (_is_int(v) and v >= 1)), "auto or an integer >= 1"),
    ("train.lr0", *_POSITIVE),
    ("train.lrf", *_POSITIVE),
    ("train.schedule", (lambda v: v in ("linear", "cosine")), "linear or cosine"),
    ("train.momentum", *_PROBABILITY),
    ("train.weight_decay", *_NON_NEGATIVE),
    ("train.warmup_epochs", *_NON_NEGATIVE),
    ("train.warmup_min_iters", *_int_at_least(0)),
    ("train.warmup_momentum", *_PROBABILITY),
    ("train.warmup_bias_lr", *_NON_NEGATIVE),
    ("train.grad_clip", *_POSITIVE),
    ("train.amp", *_BOOL),
    ("train.cpu_amp", *_BOOL),
    ("train.ema_decay", *_PROBABILITY),
    ("train.eval_interval", *_int_at_least(1)),
    ("train.loss.box", *_NON_NEGATIVE),
    ("train.loss.obj", *_NON_NEGATIVE),
    ("train.loss.cls", *_NON_NEGATIVE),
    ("train.loss.anchor_t", *_POSITIVE),
    *((f"train.augment.{key}", *_PROBABILITY)
      for key in ("hsv_h", "hsv_s", "hsv_v", "translate", "flipud", "fliplr", "mosaic", "mixup")),
    ("train.augment.scale", *_NON_NEGATIVE),
    ("train.augment.degrees", *_number_in(-360.0, 360.0)),
    ("train.augment.shear", *_number_in(-90.0, 90.0)),
    ("train.augment.perspective", *_number_in(0.0, 0.001)),
    ("eval.conf_thres", *_PROBABILITY),
    ("eval.iou_thres", *_PROBABILITY),
    ("eval.max_det", *_int_at_least(1)),
    ("eval.batch_size", *_int_at_least(1)),
    ("eval.rect", *_BOOL),
    ("bench.warmup", *_int_at_least(0)),
    ("bench.iters", *_int_at_least(1)),
    ("mlflow.heartbeat_timeout_s", *_POSITIVE),
    ("mlflow.store_check_timeout_s", *_POSITIVE),
    ("mlflow.checkpoint_to_store", *_BOOL),
)
_MISSING = object()


def validate_config(config: Mapping[str, Any]) -> None:
    """ValueError in one line for the first value of the wrong type or out of range
    (`VALUE_CHECKS`), or a group node without a `_target_`; called before anything runs."""
    for key, check, expected in VALUE_CHECKS:
        value = _lookup(config, key)
        if value is not _MISSING and not check(value):
            raise ValueError(f"{key}: {value!r}, expected {expected}")
    for group in GROUPS:
        node = config.get(group)
        if not isinstance(node, Mapping) or not isinstance(node.get("_target_"), str) or not node["_target_"]:
            raise ValueError(f"{group}: the config node has no `_target_` (expected the dotted path of the "
                             f"class to build, as every yaml in conf/{group}/ names one)")


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node
