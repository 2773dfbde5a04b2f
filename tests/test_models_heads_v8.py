"""The anchor-free head (`head=v8`), the C2f backbone and neck, and YOLOv8's loss, held against
ultralytics' own outputs (../shared/weights/README.md, "Anchor-free head references"): sizes,
neck features, training outputs, decoded output and the loss on the reference targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import SHARED
from lightyolo.measure.flops import gflops
from lightyolo.measure.params import part_parameter_counts
from lightyolo.measure.zoo import discover_cells, zoo_row
from lightyolo.models.detector import Detector, build_detector
from lightyolo.models.weights import _layer_prefixes
from lightyolo.train.anchor_free_loss import AnchorFreeLoss
from lightyolo.train.assigner import TaskAlignedAssigner

CONF = Path(__file__).resolve().parents[1] / "conf"
V8_HEAD = {"_target_": "lightyolo.models.heads.v8.AnchorFreeDetect"}
# name → (backbone, neck, ultralytics' index of the head layer)
REFERENCES = {"yolov5nu": ("c3", "pan", 24), "yolov8n": ("c2f", "c2f_pan", 22)}
BACKBONE_LAST = 9  # ultralytics' layers 0-9 are the backbone in both models


def build(backbone: str, neck: str, scale: str = "n", nc: int = 80) -> Detector:
    return build_detector(
        OmegaConf.load(CONF / "backbone" / f"{backbone}.yaml"),
        OmegaConf.load(CONF / "neck" / f"{neck}.yaml"),
        OmegaConf.load(CONF / "operator" / "conv.yaml"),
        scale=scale, nc=nc, head_cfg=OmegaConf.load(CONF / "head" / "v8.yaml").head,
    )


def ultralytics_keys(model: Detector, state: dict[str, torch.Tensor], head_index: int) -> dict[str, torch.Tensor]:
    """ultralytics' `model.<i>.<rest>` → ours: backbone layer i, the head by name, and the neck's
    k-th tensor-holding layer for ultralytics' k-th (Upsample/Concat hold none)."""
    index = {key: int(key.split(".")[1]) for key in state}
    neck_layers = sorted({i for i in index.values() if BACKBONE_LAST < i < head_index})
    neck_prefixes = _layer_prefixes(model.neck)
    mapped = {}
    for key, value in state.items():
        i, rest = index[key], key.split(".", 2)[2]
        if i <= BACKBONE_LAST:
            mapped[f"backbone.layers.{i}.{rest}"] = value
        elif i == head_index:
            mapped[f"head.{rest}"] = value
        else:
            mapped[f"neck.{neck_prefixes[neck_layers.index(i)]}.{rest}"] = value
    return mapped


@pytest.fixture(scope="module", params=sorted(REFERENCES))
def reference(request: pytest.FixtureRequest) -> tuple[str, Detector, dict]:
    name = request.param
    path = SHARED / "weights" / f"{name}.reference-io.pt"
    if not path.exists():
        pytest.skip(f"needs the shared file {path}")
    ref = torch.load(path, weights_only=False)
    backbone, neck, head_index = REFERENCES[name]
    model = build(backbone, neck)
    model.load_state_dict(ultralytics_keys(model, ref["state_dict"], head_index), strict=True)
    return name, model.eval(), ref


def close_to(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """Within 1e-4 × max |expected| everywhere (the issue's tolerance)."""
    return actual.shape == expected.shape and bool(((actual - expected).abs() <= 1e-4 * expected.abs().max()).all())


@pytest.mark.shared("weights/yolov5nu.reference-io.pt", "weights/yolov8n.reference-io.pt")
def test_neck_features_training_outputs_and_decoded_output_match_ultralytics(reference) -> None:
    name, model, ref = reference
    with torch.no_grad():
        features = model.neck(model.backbone(ref["input"]))
        decoded, raw = model.head(features)
        box_logits, cls_logits = model.head.split(raw)
    assert all(close_to(a, b) for a, b in zip(features, ref["neck_features"], strict=True)), name
    assert close_to(box_logits, ref["box_logits"]) and close_to(cls_logits, ref["cls_logits"]), name
    # ours is (B, A, 4 + nc), ultralytics' (B, 4 + nc, A)
    assert close_to(decoded, ref["decoded"].transpose(1, 2)), name


@pytest.mark.shared("weights/yolov5nu.reference-io.pt", "weights/yolov8n.reference-io.pt")
def test_loss_box_cls_dfl_match_ultralytics_on_the_reference_targets(reference) -> None:
    name, model, ref = reference
    with torch.no_grad():
        raw = model.head(model.neck(model.backbone(ref["input"])))[1]
    targets = torch.cat((ref["batch_idx"].view(-1, 1), ref["cls"].view(-1, 1), ref["bboxes"]), 1)
    loss = AnchorFreeLoss(model.head, box_gain=7.5, cls_gain=0.5, dfl_gain=1.5, topk=10, alpha=0.5, beta=6.0)
    total, items = loss(raw, targets)
    batch = ref["input"].shape[0]
    assert torch.allclose(items, ref["loss_items"], rtol=1e-4, atol=0), name
    assert torch.allclose(items * batch, ref["loss"], rtol=1e-4, atol=0), name
    assert total.item() == pytest.approx(ref["loss"].sum().item(), rel=1e-4)


@pytest.mark.parametrize(
    ("backbone", "neck", "scale", "parts", "total", "gflops_640"),
    [
        ("c3", "pan", "n", (1_046_368, 710_784, 897_664), 2_654_816, 7.84),
        ("c3", "pan", "s", (4_171_456, 2_834_688, 2_147_008), 9_153_152, 24.21),
        ("c2f", "c2f_pan", "n", (1_272_656, 986_880, 897_664), 3_157_200, 8.86),
        ("c2f", "c2f_pan", "s", (5_079_712, 3_939_840, 2_147_008), 11_166_560, 28.81),
    ],
)
def test_sizes_match_yolov5u_and_yolov8(backbone, neck, scale, parts, total, gflops_640) -> None:
    model = build(backbone, neck, scale)
    counts = part_parameter_counts(model)
    assert (counts["backbone"], counts["neck"], counts["head"], counts["total"]) == (*parts, total)
    # Ours folds BatchNorm (docs/references.md); ultralytics' thop figure counts the unfused BN at
    # 8 FLOPs per output element (thop 2.x: 2·numel, ×2 when affine; ×2 for FLOPs).
    folded = gflops(model, 640)
    assert folded + 8 * batchnorm_outputs(model, 640) / 1e9 == pytest.approx(gflops_640, rel=0.01)
    assert folded < gflops_640


def batchnorm_outputs(model: Detector, img_size: int) -> int:
    """Elements written by every BatchNorm2d in one eval forward at img_size²."""
    counted = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: counted.append(out.numel()))
             for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, img_size, img_size))
    for hook in hooks:
        hook.remove()
    return sum(counted)


def test_assigner_gives_each_object_at_most_topk_cells_inside_its_box() -> None:
    generator = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(8) + 0.5, indexing="ij")
    points = torch.stack((xs, ys), -1).view(-1, 2) * 8  # an 8×8 grid of stride 8
    gt_boxes = torch.tensor([[[4.0, 4.0, 40.0, 36.0], [24.0, 20.0, 60.0, 60.0]]])
    gt_labels, gt_mask = torch.tensor([[[1.0], [2.0]]]), torch.ones(1, 2, 1)
    pred_boxes = gt_boxes[0, torch.randint(0, 2, (64,), generator=generator)].unsqueeze(0)
    pred_scores = torch.rand(1, 64, 3, generator=generator)
    assigned = TaskAlignedAssigner(3, topk=5)(pred_scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask)
    positives = assigned.foreground[0]
    assert 0 < int(positives.sum()) <= 10
    for cell in positives.nonzero().flatten().tolist():
        box = gt_boxes[0, assigned.object_index[0, cell]]
        x, y = points[cell].tolist()
        assert box[0] < x < box[2] and box[1] < y < box[3]
        assert torch.equal(assigned.boxes[0, cell], box)
        label = int(gt_labels[0, assigned.object_index[0, cell], 0])
        assert assigned.scores[0, cell].nonzero().flatten().tolist() == [label]
    assert float(assigned.scores.max()) <= 1.0
    assert not assigned.scores[0, ~positives].any()


def test_v8_loss_backward_reaches_every_trainable_parameter_and_not_the_dfl_bins() -> None:
    torch.manual_seed(0)
    model = build("c2f", "c2f_pan", nc=3).train()
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.3], [1, 2, 0.3, 0.6, 0.2, 0.5]])
    total, items = AnchorFreeLoss(model.head)(model(torch.rand(2, 3, 64, 96)), targets)
    total.backward()
    assert items.shape == (3,) and bool(torch.isfinite(items).all()) and bool((items > 0).all())
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert model.head.dfl.conv.weight.grad is None
    assert model.head.dfl.conv.weight.flatten().tolist() == list(range(16))


def test_an_image_without_objects_gives_only_a_class_loss() -> None:
    model = build("c3", "pan", nc=3).train()
    total, items = AnchorFreeLoss(model.head)(model(torch.rand(1, 3, 64, 64)), torch.zeros(0, 6))
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    assert total.item() == pytest.approx(items[1].item())


@pytest.mark.parametrize(("cell", "params"), [("c3/pan/conv/v8", 2_654_816), ("c2f/c2f_pan/conv/v8", 3_157_200)])
def test_the_zoo_lists_the_v8_cells_with_ultralytics_parameter_counts(cell: str, params: int) -> None:
    cells = {c.name: c for c in discover_cells(CONF, heads="all")}
    row = zoo_row(cells[cell], "n", 640, check=False)
    assert (row["head"], row["params"], row["strides"]) == ("v8", params, "8/16/32")
    assert {c.names[3] for c in cells.values()} == {"v5", "v8"}
