"""Every installed deployment runtime runs a smoke cell's export as PyTorch does (fp32 within
1e-4 of the output's range), INT8 runs in ONNX Runtime and OpenVINO calibrated on training
images only, and a pair a runtime cannot take is refused as Unsupported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightyolo.deploy.calibration import training_calibration
from lightyolo.deploy.registry import BUILT_IN, ENTRY_POINT_GROUP, build_runtime
from lightyolo.deploy.runtime import Exported, RuntimeUnavailable, Unsupported
from lightyolo.export import fuse_batchnorm
from lightyolo.models.detector import build_detector

from conftest import CONF_DIR, compose_config, tiny_overrides

IMG = 64
# ExecuTorch (an optional extra) lowers through torch.export and XNNPACK: minutes here, so slow.
CPU_RUNTIMES = [pytest.param(name, marks=[pytest.mark.slow] if name == "executorch" else [])
                for name in BUILT_IN if name != "onnxruntime_trt"]


def runtime_or_skip(name: str):
    try:
        return build_runtime(name, "cpu", 1)
    except RuntimeUnavailable as err:
        pytest.skip(f"{name} is not installed here: {err}")


def smoke_cell(backbone: str, neck: str, operator: str = "conv") -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_detector(OmegaConf.load(CONF_DIR / "backbone" / f"{backbone}.yaml"),
                           OmegaConf.load(CONF_DIR / "neck" / f"{neck}.yaml"),
                           OmegaConf.load(CONF_DIR / "operator" / f"{operator}.yaml"), scale="n", nc=3)
    return fuse_batchnorm(model.eval())


def pytorch_output(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(images))[0].numpy()


@pytest.mark.parametrize("cell", [("c3", "pan"), ("ghost", "slim")], ids=["c3-pan", "ghost-slim"])
@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_each_installed_runtime_matches_pytorch_at_fp32(name: str, cell: tuple[str, str], tmp_path: Path) -> None:
    runtime = runtime_or_skip(name)
    model = smoke_cell(*cell)
    images = np.random.default_rng(0).random((1, 3, IMG, IMG), dtype=np.float32)
    session = runtime.load(Exported(model, IMG, 1, tmp_path), "fp32")
    expected = pytorch_output(model, images)
    got = session.run(images)
    assert got.shape == expected.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 8)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert runtime.version


@pytest.fixture
def shapes_spec(tmp_path: Path):
    """The tiny synthetic dataset's spec: 16 train, 8 val, 8 test images (distinct files)."""
    return instantiate(compose_config(tiny_overrides(tmp_path)).dataset)


def test_calibration_draws_only_training_images_and_records_them(shapes_spec) -> None:
    calibration = training_calibration(shapes_spec, IMG, images=6, seed=0)
    train = {str(r.path) for r in shapes_spec.train}
    held_out = {str(r.path) for r in shapes_spec.val + shapes_spec.test}
    assert len(calibration.paths) == 6 and set(calibration.paths) <= train
    assert not set(calibration.paths) & held_out
    assert [b.shape for b in calibration.batches] == [(1, 3, IMG, IMG)] * 6
    assert all(0 <= b.min() and b.max() <= 1 for b in calibration.batches)
    assert calibration.description | {"files_sha256": None} == {
        "dataset": shapes_spec.name, "split": "train", "images_asked": 6, "images_used": 6,
        "split_size": 16, "seed": 0, "files_sha256": None, "also_in_val": 0, "also_in_test": 0,
        "preprocessing": f"long side {IMG}, letterboxed into {IMG}x{IMG} as the evaluation, RGB/255",
    }
    # A rectangular input (a rect evaluation batch's shape): the same images letterboxed into it.
    wide = training_calibration(shapes_spec, IMG, images=6, seed=0, shape=(32, IMG))
    assert wide.paths == calibration.paths and [b.shape for b in wide.batches] == [(1, 3, 32, IMG)] * 6
    # Asking for more than the split holds takes all of it, and says so.
    assert training_calibration(shapes_spec, IMG, images=300).description["images_used"] == 16


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_int8_runs_calibrated_on_the_training_split_only(name: str, shapes_spec, tmp_path: Path) -> None:
    runtime = runtime_or_skip(name)
    model = smoke_cell("c3", "pan")
    asked = []

    def calibration(shape):
        made = training_calibration(shapes_spec, IMG, images=8, seed=1, shape=shape)
        asked.append(made)
        return made

    session = runtime.load(Exported(model, IMG, 1, tmp_path, calibration), "int8")
    assert len(asked) == 1
    train = {str(r.path) for r in shapes_spec.train}
    assert set(asked[0].paths) <= train and len(asked[0].paths) == 8
    recorded = session.description["calibration"]
    assert recorded["split"] == "train" and recorded["files_sha256"] == asked[0].description["files_sha256"]
    assert "quantiz" in session.description["quantization"]
    images = np.random.default_rng(0).random((1, 3, IMG, IMG), dtype=np.float32)
    expected = pytorch_output(model, images)
    got = session.run(images)
    assert got.shape == expected.shape and np.isfinite(got).all()
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()


def test_int8_without_calibration_images_is_unsupported(tmp_path: Path) -> None:
    runtime = runtime_or_skip("onnxruntime")
    with pytest.raises(Unsupported, match="calibration images from the cell's training split"):
        runtime.load(Exported(smoke_cell("c3", "pan"), IMG, 1, tmp_path), "int8")


@pytest.mark.parametrize(("name", "precision", "reason"), [
    ("torch", "int8", "torch does not run int8 here"),
    ("torch", "fp16", "torch does not run fp16 here"),  # cpu: fp16 is the CUDA path
    ("ncnn", "int8", "ncnn does not run int8 here"),
])
def test_a_pair_the_runtime_cannot_run_is_unsupported(name: str, precision: str, reason: str, tmp_path: Path) -> None:
    runtime = runtime_or_skip(name)
    with pytest.raises(Unsupported, match=reason):
        runtime.load(Exported(smoke_cell("c3", "pan"), IMG, 1, tmp_path), precision)


def test_an_export_ncnn_cannot_take_is_unsupported_not_a_crash(tmp_path: Path) -> None:
    """Involution's graph: pnnx converts it, ncnn has no layer for one of its reshapes."""
    runtime = runtime_or_skip("ncnn")
    with pytest.raises(Unsupported, match="ncnn: cannot load model.ncnn.param converted by pnnx"):
        runtime.load(Exported(smoke_cell("c3", "pan", "involution"), IMG, 1, tmp_path), "fp32")


def test_a_plugin_whose_module_is_missing_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    info = tmp_path / "broken_runtime-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-runtime\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbrokenrt = no_such_module_here:Runtime\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match="brokenrt needs the package that declares 'no_such_module_here:Runtime'"):
        build_runtime("brokenrt", "cpu", 1)


def test_unknown_runtime_names_the_valid_ones() -> None:
    with pytest.raises(RuntimeUnavailable, match=r"unknown runtime 'tflite' \(valid: torch, onnxruntime"):
        build_runtime("tflite", "cpu", 1)
