"""`python -m lightyolo.export [key=value ...]`: a cell's best.pt → ONNX, logged on its MLflow run.

What is exported: the detector rebuilt from the run's own `config.yaml` (backbone, neck,
operator and head configs, `model.scale`; the class count is read off the weights; a
config from before the head group has YOLOv5's head), its `best.pt`
weights loaded, BatchNorm fused into the preceding convolutions with torch's
`torch.nn.utils.fusion.fuse_conv_bn_eval` (`fuse_batchnorm`, also what the bench stage
measures), eval mode, NCHW contiguous. The exporter is torch's TorchScript-based one
(`torch.onnx.export(..., dynamo=False)`), opset 17: it traces the eval forward directly
(Involution takes its plain-op inference path there) and needs no onnxscript.

The ONNX graph:

- input `images`: float32 (1, 3, H, W), RGB in [0, 1], H = W = the run's `train.img_size` or
  `img=`; with `dynamic_batch=true` the first axis is a symbolic `batch`.
- output `detections`: the head's decoded inference output before any confidence threshold
  or NMS, float32:
  - `head=v5` (YOLOv5's Detect, `models/heads/v5.py`): (B, N, 5 + nc), per anchor box
    (x_center, y_center, width, height) in input pixels, objectness, then nc class scores,
    all after the sigmoid. N = 3 anchors × Σ (H/s · W/s) over the strides 8, 16, 32; rows
    are level by level, then anchor, then grid row, then column.
  - `head=v8` (the anchor-free head, `models/heads/v8.py`): (B, N, 4 + nc), per grid cell
    (x_center, y_center, width, height) in input pixels (the DFL expectation of the 4 side
    distances around the cell centre), then nc class scores after the sigmoid; no
    objectness. N = Σ (H/s · W/s) over the strides 8, 16, 32; rows level by level, then
    grid row, then column. (Ultralytics' own export is the transpose, (B, 4 + nc, N).)
  The head's raw per-level maps (the training output) are not exported.

Keys (conf/export.yaml, `--help`): `run_id=` (the MLflow run; `tracking_uri=` as in the
report, default `sqlite:///<cwd>/mlflow.db`) or `weights=<best.pt> config=<config.yaml>`
(files on disk; no logging), `img=`, `dynamic_batch=`, `out=` (the .onnx file to write;
default `export/<run_id or weights stem>.onnx`), `opset=` (≥ 17).
"""

from __future__ import annotations

import copy
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lightyolo import command
from lightyolo.configs import ConfigPathError, UnregisteredTargetError, check_registered_targets
from lightyolo.models.detector import Detector, build_detector
from lightyolo.settings import tracking_uri
from lightyolo.store.client import Store
from lightyolo.store.schema import CONFIG_ARTIFACT, ONNX_ARTIFACT, WEIGHTS_ARTIFACT
from lightyolo.store.health import require_store

MIN_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "detections"


class ExportError(Exception):
    """A condition `export` (and `bench`) explains in one line: a missing run, file or key."""


# --- the model a cell deploys -------------------------------------------------------------


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of `model` with each BatchNorm2d that directly follows a Conv2d
    folded into it (torch's `fuse_conv_bn_eval`).

    Pairs are found two ways: a module with `conv` (Conv2d) and `bn` (BatchNorm2d) children,
    as `layers.Conv`; and adjacent Conv2d → BatchNorm2d inside an nn.Sequential. A BatchNorm
    after anything else (Involution's) stays, in eval mode.
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):  # a list: children are replaced on the way
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv, bn)
            module.bn = nn.Identity()
        if isinstance(module, nn.Sequential):
            names = [name for name, _ in module.named_children()]
            for first, second in zip(names, names[1:]):
                conv, bn = getattr(module, first), getattr(module, second)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(module, first, fuse_conv_bn_eval(conv, bn))
                    setattr(module, second, nn.Identity())
    return fused


def classes_in_weights(state_dict: dict[str, torch.Tensor], source: str) -> int:
    """nc of a detector's state_dict: YOLOv5's head.m.0 has na · (5 + nc) output channels, the
    anchor-free head's class branch (head.cv3.0, last conv) nc."""
    if "head.cv3.0.2.bias" in state_dict:
        return state_dict["head.cv3.0.2.bias"].shape[0]
    try:
        anchors = state_dict["head.anchors"]
        outputs = state_dict["head.m.0.bias"].shape[0]
    except KeyError as err:
        raise ExportError(f"{source}: not a lightyolo detector state_dict (no {err.args[0]})") from None
    return outputs // anchors.shape[1] - 5


def load_detector(config: DictConfig, state_dict: dict[str, torch.Tensor], source: str) -> Detector:
    """The detector of a run's resolved config with `state_dict` loaded (eval mode, unfused)."""
    for key in ("backbone", "neck", "operator", "model"):
        if key not in config:
            raise ExportError(f"{source}: config has no {key!r} node (expected a run's resolved config.yaml)")
    model = build_detector(
        config.backbone, config.neck, config.operator, scale=config.model.scale,
        nc=classes_in_weights(state_dict, source), head_cfg=config.get("head"),
    )
    model.load_state_dict(state_dict)
    return model.eval()


def load_checkpoint_files(
    config_path: Path, weights_path: Path, source: str | None = None
) -> tuple[DictConfig, Detector]:
    """(config, unfused eval detector) from a config.yaml and a best.pt/last.pt on disk.

    The config is data: its backbone, neck and operator must name registered `_target_`s
    (`configs.check_registered_targets`) before anything is built; `source` names it in errors."""
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ExportError(f"{path}: no such file")
    config = OmegaConf.load(config_path)
    if not isinstance(config, DictConfig):
        raise ExportError(f"{config_path}: expected a mapping (a run's config.yaml)")
    try:
        check_registered_targets(OmegaConf.to_container(config, resolve=False), source or str(config_path))
    except (UnregisteredTargetError, ConfigPathError) as err:
        raise ExportError(str(err)) from None
    try:
        checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: name it
        raise ExportError(f"{weights_path}: cannot load checkpoint ({type(err).__name__}: {err})") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ExportError(f"{weights_path}: expected a checkpoint dict with a 'model' state_dict")
    return config, load_detector(config, state, str(weights_path))


def load_run(tracking_uri: str, run_id: str, directory: Path) -> tuple[DictConfig, Detector]:
    """(config, unfused eval detector) of an MLflow run, its artifacts downloaded into `directory`."""
    wanted = (CONFIG_ARTIFACT, WEIGHTS_ARTIFACT)
    store = Store(tracking_uri)
    missing = [a for a in wanted if not store.has_artifact(run_id, a)]
    if missing:
        raise ExportError(f"run {run_id}: no artifact {' or '.join(missing)} (not a completed training run?)")
    paths = {a: store.download_artifact(run_id, a, directory) for a in wanted}
    return load_checkpoint_files(paths[CONFIG_ARTIFACT], paths[WEIGHTS_ARTIFACT], f"run {run_id} {CONFIG_ARTIFACT}")


# --- ONNX ---------------------------------------------------------------------------------


class DecodedOutput(nn.Module):
    """The detector's eval forward reduced to its decoded tensor ((B, N, 5 + nc) or (B, N, 4 + nc))."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector(images)[0]


def export_onnx(
    model: nn.Module, path: Path, img: int | tuple[int, int], *, dynamic_batch: bool = False, opset: int = MIN_OPSET
) -> Path:
    """Write `model` (fused here) as ONNX with a (1, 3, img, img) input, or (1, 3, H, W) for
    img = (H, W) (a rectangular evaluation batch's shape); returns `path`."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset={opset}: expected >= {MIN_OPSET}")
    height, width = (img, img) if isinstance(img, int) else img
    if min(height, width) < 32 or height % 32 or width % 32:
        raise ExportError(f"img={img}: expected a positive multiple of 32 (the largest stride)")
    path.parent.mkdir(parents=True, exist_ok=True)
    deployed = DecodedOutput(fuse_batchnorm(model)).to("cpu", memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, height, width)
    # The TorchScript exporter is chosen on purpose (design: it traces the eval forward, needs
    # no onnxscript, and takes Involution's graph); torch 2.9+ announces its deprecation on
    # every call, which says nothing to a user of this command.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        torch.onnx.export(
            deployed,
            (example,),
            str(path),
            dynamo=False,  # the TorchScript exporter: traces the eval forward, no onnxscript
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
        )
    return path


# --- CLI ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOptions:
    run_id: str | None = None
    tracking_uri: str | None = None
    weights: str | None = None
    config: str | None = None
    img: int | None = None
    dynamic_batch: bool = False
    opset: int = MIN_OPSET
    out: str | None = None


def export_options(cfg: DictConfig) -> ExportOptions:
    """The composed `conf/export.yaml` → ExportOptions; a UsageError naming a bad value."""
    options = ExportOptions(
        run_id=command.text(cfg, "run_id"), tracking_uri=command.text(cfg, "tracking_uri"),
        weights=command.text(cfg, "weights"), config=command.text(cfg, "config"),
        img=command.integer(cfg, "img"), dynamic_batch=command.boolean(cfg, "dynamic_batch"),
        opset=command.integer(cfg, "opset"), out=command.text(cfg, "out"),
    )
    from_files = options.weights is not None or options.config is not None
    if (options.run_id is not None) == from_files or (from_files and None in (options.weights, options.config)):
        raise ExportError("export: give run_id=ID, or both weights=FILE and config=FILE")
    return options


def export(options: ExportOptions, *, cwd: Path | None = None) -> Path:
    """Export as `options` say; with run_id the file is also logged as `export/model.onnx`."""
    cwd = Path.cwd() if cwd is None else cwd
    with tempfile.TemporaryDirectory(prefix="lightyolo-export-") as tmp:
        if options.run_id is not None:
            uri = tracking_uri(options.tracking_uri, cwd)
            try:
                require_store(uri)  # a reader never creates or writes a damaged store
            except ValueError as err:
                raise ExportError(str(err)) from None
            if not Store(uri).run_exists(options.run_id):
                raise ExportError(f"no MLflow run {options.run_id!r} at {uri}")
            config, model = load_run(uri, options.run_id, Path(tmp))
            stem = options.run_id
        else:
            config, model = load_checkpoint_files(Path(options.config), Path(options.weights))
            stem = Path(options.weights).stem
        img = options.img or int(OmegaConf.select(config, "train.img_size", default=0) or 0)
        if not img:
            raise ExportError("export: the config has no train.img_size; give img=N")
        out = Path(options.out) if options.out else Path("export") / f"{stem}.onnx"
        out = out if out.is_absolute() else cwd / out
        export_onnx(model, out, img, dynamic_batch=options.dynamic_batch, opset=options.opset)
        if options.run_id is not None:
            Store(uri).log_exported_model(options.run_id, out, ONNX_ARTIFACT)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`lightyolo export [key=value ...]` (conf/export.yaml): prints the file written."""
    return command.run(
        "export", argv, lambda cfg: print(f"wrote {export(export_options(cfg))}"),
        label="lightyolo.export", errors=(ExportError,),
    )


if __name__ == "__main__":
    sys.exit(main())
