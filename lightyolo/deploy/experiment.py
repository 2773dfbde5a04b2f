"""mAP through each runtime and precision, for the completed cells of an experiment.

Each completed cell run (`config.yaml`, `weights/best.pt`) is rebuilt and deployed as the
bench stage deploys it (BatchNorm fused, batch 1, the run's `train.img_size`); for every
(runtime, precision) the deployed model is COCO-evaluated on the split the cell reports on
(accuracy.py) and logged on the cell's own run:

- metrics `deploy/<runtime>_<precision>/map50_95` and `/map50` (fp32 included: the
  `deploy/torch_fp32` figure is the reference every drop is taken from, measured on the
  same path: the run's own `eval.rect` letterbox, one export per batch shape);
- tag `deploy/<runtime>_<precision>`: JSON saying how (runtime and version, split, images,
  pre-processing, NMS settings, and for int8 the quantization method and calibration set);
- a (runtime, precision) the runtime cannot take gets that tag with `"status": "unsupported"`
  and its reason, and no metric.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lightyolo.deploy.accuracy import PREPROCESSING, EvalOptions, evaluate_on_split
from lightyolo.deploy.calibration import DEFAULT_IMAGES, read_dataset_spec, training_calibration
from lightyolo.deploy.registry import build_runtime
from lightyolo.deploy.runtime import PRECISIONS, Exported, RuntimeUnavailable, Session, Unsupported
from lightyolo.export import ExportError, fuse_batchnorm, load_run
from lightyolo.store import schema
from lightyolo.store.client import Store
from lightyolo.store.queries import runs_to_measure
from lightyolo.store.runs import RunTracker

DEFAULT_RUNTIMES = ("torch", "onnxruntime", "openvino", "ncnn")


class DeployError(Exception):
    """A condition `python -m lightyolo.deploy` explains in one line (exit status 2)."""


@dataclass(frozen=True)
class DeploySettings:
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    precisions: tuple[str, ...] = ("fp32", "int8")
    threads: int = 1
    calibration_images: int = DEFAULT_IMAGES
    seed: int = 0  # draws the calibration images


@dataclass(frozen=True)
class DeployResult:
    run_id: str
    run_name: str
    key: str  # <runtime>_<precision>
    map50_95: float | None  # None: unsupported
    map50: float | None
    how: dict


def eval_options(config: DictConfig) -> EvalOptions:
    node = OmegaConf.select(config, "eval", default=None) or {}
    defaults = EvalOptions()
    return EvalOptions(**{k: node.get(k, getattr(defaults, k))
                          for k in ("conf_thres", "iou_thres", "max_det", "batch_size", "rect")})


def deploy_cell(
    config: DictConfig, model, source: str, settings: DeploySettings, workdir: Path, *, log: Callable[[str], None]
) -> dict[str, tuple[float | None, float | None, dict]]:
    """{<runtime>_<precision>: (map50_95, map50, how)} of one cell (None figures: unsupported)."""
    try:
        spec = read_dataset_spec(config, source)
    except ValueError as err:
        raise DeployError(str(err)) from None
    img = int(OmegaConf.select(config, "train.img_size", default=0) or 0)
    if img < 32 or img % 32:
        raise DeployError(f"{source}: train.img_size={img}: expected a positive multiple of 32")
    fused, stride = fuse_batchnorm(model), int(model.stride.max())
    exports: dict[tuple[int, int], Exported] = {}  # one export per input shape, shared by the runtimes

    def exported(shape: tuple[int, int]) -> Exported:
        if shape not in exports:
            exports[shape] = Exported(
                fused, shape, 1, workdir / f"{shape[0]}x{shape[1]}",
                calibration=lambda at: training_calibration(spec, img, settings.calibration_images, settings.seed, at),
            )
        return exports[shape]

    options = eval_options(config)
    figures: dict[str, tuple[float | None, float | None, dict]] = {}
    for name in settings.runtimes:
        runtime = build_runtime(name, "cpu", settings.threads)
        for precision in settings.precisions:
            key = f"{name}_{precision}"
            how: dict = {"runtime": name, "runtime_version": runtime.version, "precision": precision,
                         "threads": settings.threads, "img": img}
            sessions: dict[tuple[int, int], Session] = {}

            def session_for(shape: tuple[int, int]) -> Session:
                if shape not in sessions:
                    sessions[shape] = runtime.load(exported(shape), precision)
                return sessions[shape]

            try:
                split, result = evaluate_on_split(session_for, spec, img, options, stride)
            except Unsupported as err:
                log(f"deploy: {source} {key}: unsupported: {err}")
                figures[key] = (None, None, how | {"status": "unsupported", "reason": str(err)})
                continue
            how |= {"status": "measured", "split": split, "images": result.images, "dataset": spec.name,
                    "preprocessing": PREPROCESSING[options.rect], "input_shapes": sorted(sessions),
                    "conf_thres": options.conf_thres, "iou_thres": options.iou_thres, "max_det": options.max_det,
                    "metrics": "pycocotools (lightyolo.eval.evaluate with the runtime's forward)",
                    **next(iter(sessions.values())).description}
            figures[key] = (result.metrics["map50_95"], result.metrics["map50"], how)
            log(f"deploy: {source} {key}: mAP50-95 {result.metrics['map50_95']:.4f} "
                f"mAP50 {result.metrics['map50']:.4f} ({split}, {result.images} images)")
    return figures


def deploy_runs(
    tracking_uri: str, experiment: str, settings: DeploySettings, run_ids: tuple[str, ...] = (), *, log=print
) -> list[DeployResult]:
    """Measure and log (module docstring) every completed cell of `experiment`, or only `run_ids`."""
    unknown = [p for p in settings.precisions if p not in PRECISIONS]
    if unknown:
        raise DeployError(f"precisions: unknown precision {unknown[0]!r} (valid: {', '.join(PRECISIONS)})")
    try:
        for name in settings.runtimes:
            build_runtime(name, "cpu", settings.threads)
        runs = runs_to_measure(Store(tracking_uri), experiment, run_ids, "deploy")
    except (RuntimeUnavailable, ValueError) as err:
        raise DeployError(str(err)) from None
    results: list[DeployResult] = []
    for run in runs:
        with tempfile.TemporaryDirectory(prefix="lightyolo-deploy-") as tmp:
            try:
                config, model = load_run(tracking_uri, run.run_id, Path(tmp) / "run")
            except ExportError as err:
                raise DeployError(f"experiment {experiment!r} ({run.run_name}): {err}") from None
            figures = deploy_cell(config, model, run.run_name, settings, Path(tmp) / "deployed", log=log)
        metrics = {schema.deploy_metric(key, name): value for key, (m5095, m50, _) in figures.items()
                   for name, value in (("map50_95", m5095), ("map50", m50)) if value is not None}
        recorder = RunTracker(Store(tracking_uri), run.run_id)
        recorder.log_metrics(metrics)
        recorder.set_tags({schema.deploy_tag(key): json.dumps(how) for key, (_, _, how) in figures.items()})
        results += [DeployResult(run.run_id, run.run_name, key, m5095, m50, how)
                    for key, (m5095, m50, how) in figures.items()]
    return results
