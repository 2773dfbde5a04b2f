"""mAP through a deployed runtime: YOLOv5n's official weights on 32 coco128 images at 320 in
rectangular batches of 16 (the pipeline's evaluation), evaluated through each runtime (one
export per batch shape) with the evaluator's forward function, equal PyTorch's own
evaluation within 0.002 at fp32; and the forward-function path scores as the model path."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightyolo.data.dataset import DetectionDataset
from lightyolo.data.loader import build_dataloader
from lightyolo.data.specs import read_class_names
from lightyolo.data.yolo_format import read_yolo_split
from lightyolo.deploy.accuracy import EvalOptions, evaluate_session, session_forward
from lightyolo.deploy.registry import build_runtime
from lightyolo.deploy.runtime import Exported, RuntimeUnavailable
from lightyolo.eval.coco import coco_ground_truth
from lightyolo.eval.evaluate import evaluate
from lightyolo.export import fuse_batchnorm
from lightyolo.models.detector import build_detector
from lightyolo.models.weights import load_weights

from conftest import CONF_DIR, COCO128, YOLOV5N_WEIGHTS

IMG = 320
IMAGES = 32
pytestmark = pytest.mark.shared("weights/yolov5n.state_dict.pt", "data/coco128")


@pytest.fixture(scope="module")
def yolov5n(tmp_path_factory):
    """(fused model, records, ground truth, category ids, exported cell)."""
    model = build_detector(OmegaConf.load(CONF_DIR / "backbone" / "c3.yaml"), OmegaConf.load(CONF_DIR / "neck" / "pan.yaml"),
                           OmegaConf.load(CONF_DIR / "operator" / "conv.yaml"), scale="n", nc=80)
    assert load_weights(model, YOLOV5N_WEIGHTS).complete
    names = read_class_names(COCO128 / "data.yaml")
    records, _ = read_yolo_split(COCO128 / "images" / "train2017", COCO128 / "labels" / "train2017", len(names))
    records = records[:IMAGES]
    category_ids = list(range(1, len(names) + 1))
    gt = coco_ground_truth(records, category_ids, names)
    return fuse_batchnorm(model.eval()), records, gt, category_ids, tmp_path_factory.mktemp("yolov5n")


def sessions(runtime, model, directory: Path):
    """The runtime's fp32 session of each input shape, exported when first met."""
    made = {}

    def session_for(shape):
        if shape not in made:
            made[shape] = runtime.load(Exported(model, shape, 1, directory / runtime.name / f"{shape[0]}x{shape[1]}"), "fp32")
        return made[shape]

    return session_for


def rect_loader(records):
    dataset = DetectionDataset(records, IMG, augment=False, rect=True, batch_size=16, stride=32)
    return build_dataloader(dataset, batch_size=16, workers=0, shuffle=False, seed=0)


@pytest.fixture(scope="module")
def pytorch_map(yolov5n) -> float:
    """PyTorch's own evaluation, as the pipeline runs it."""
    model, records, gt, category_ids, _ = yolov5n
    return evaluate(model, rect_loader(records), coco_gt=gt, category_ids=category_ids, conf_thres=0.001,
                    iou_thres=0.6, max_det=300, device="cpu").metrics["map50_95"]


def test_a_forward_function_scores_exactly_as_the_model_does(yolov5n) -> None:
    model, records, gt, category_ids, directory = yolov5n
    loader = rect_loader(records)
    options = dict(coco_gt=gt, category_ids=category_ids, conf_thres=0.001, iou_thres=0.6, max_det=300, device="cpu")
    own = evaluate(model, loader, **options)
    through = evaluate(None, loader, forward=session_forward(sessions(build_runtime("torch", "cpu", 1), model, directory)),
                       **options)
    # One image per call against batches of 16: the same detections up to float rounding.
    assert own.metrics == pytest.approx(through.metrics, abs=1e-4)
    assert len(own.predictions) == len(through.predictions)
    assert own.metrics["map50_95"] > 0.2  # a real model on real images, not an empty score
    with pytest.raises(ValueError, match="a model or a forward function"):
        evaluate(model, loader, forward=lambda x: x, **options)


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "ncnn"])
def test_fp32_map_through_each_runtime_equals_pytorchs_within_0_002(name: str, yolov5n, pytorch_map: float) -> None:
    model, records, gt, category_ids, directory = yolov5n
    try:
        runtime = build_runtime(name, "cpu", 1)
    except RuntimeUnavailable as err:
        pytest.skip(f"{name} is not installed here: {err}")
    result = evaluate_session(sessions(runtime, model, directory), records, gt, category_ids, IMG, EvalOptions())
    assert result.images == IMAGES
    assert result.metrics["map50_95"] == pytest.approx(pytorch_map, abs=0.002)
    assert pytorch_map > 0.2
