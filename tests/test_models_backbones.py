"""The lightweight backbones (Ghost, ShuffleNetV2, MobileNetV3): exact sizes, taps, operator sites."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightyolo.models.backbones.ghost import GhostBackbone, GhostBottleneck
from lightyolo.models.backbones.mobilenetv3 import MobileNetV3Backbone
from lightyolo.models.backbones.shufflenetv2 import ShuffleNetV2Backbone
from lightyolo.models.detector import build_detector
from lightyolo.models.operators.conv import ConvOperator

CONF_BACKBONE = Path(__file__).resolve().parents[1] / "conf" / "backbone"

SCALE_S = {"width_multiple": 0.50, "depth_multiple": 0.33}
SCALE_N = {"width_multiple": 0.25, "depth_multiple": 0.33}

# (id, class, constructor kwargs, params from docs/references.md)
BACKBONES = [
    ("ghost-s", GhostBackbone, SCALE_S, 2_237_208),
    ("ghost-n", GhostBackbone, SCALE_N, 569_356),
    ("shufflenetv2-1.0x", ShuffleNetV2Backbone, {**SCALE_N, "width": 1.0}, 776_420),
    ("shufflenetv2-0.5x", ShuffleNetV2Backbone, {**SCALE_S, "width": 0.5}, 143_136),
    ("mobilenetv3-large", MobileNetV3Backbone, {**SCALE_N, "variant": "large"}, 2_816_432),
    ("mobilenetv3-small", MobileNetV3Backbone, {**SCALE_S, "variant": "small"}, 870_560),
]
IDS = [case[0] for case in BACKBONES]


def build(cls: type[nn.Module], kwargs: dict, operator=None) -> nn.Module:
    return cls(operator=operator or ConvOperator(), **kwargs)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class RecordingOperator:
    """ConvOperator that records each request and counts the forward calls of what it built."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, int, bool, str]] = []
        self.forward_calls: list[int] = []
        self._conv = ConvOperator()

    def __call__(
        self, channels: int, kernel_size: int, *, depthwise: bool, act: bool | nn.Module = True
    ) -> nn.Module:
        act_name = type(act).__name__ if isinstance(act, nn.Module) else str(act)
        self.requests.append((channels, kernel_size, depthwise, act_name))
        module = self._conv(channels, kernel_size, depthwise=depthwise, act=act)
        index = len(self.forward_calls)
        self.forward_calls.append(0)

        def count(*_: object) -> None:
            self.forward_calls[index] += 1

        module.register_forward_hook(count)
        return module


@pytest.mark.parametrize(("name", "cls", "kwargs", "params"), BACKBONES, ids=IDS)
def test_parameter_count_matches_reference(name, cls, kwargs, params):
    assert count_params(build(cls, kwargs)) == params


@pytest.mark.parametrize(("name", "cls", "kwargs", "params"), BACKBONES, ids=IDS)
@pytest.mark.parametrize(("height", "width"), [(320, 320), (256, 384), (250, 330)])
def test_outputs_have_declared_channels_at_strides_8_16_32(name, cls, kwargs, params, height, width):
    model = build(cls, kwargs).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, height, width))
    assert model.strides == (8, 16, 32)
    assert len(maps) == 3
    assert tuple(m.shape[1] for m in maps) == model.out_channels
    # Every stride-2 layer pads "same", so odd sizes round up at each level.
    assert [tuple(m.shape[2:]) for m in maps] == [
        (math.ceil(height / s), math.ceil(width / s)) for s in (8, 16, 32)
    ]


@pytest.mark.parametrize(
    ("cls", "kwargs", "out_channels"),
    [
        (GhostBackbone, SCALE_S, (128, 256, 512)),
        (GhostBackbone, SCALE_N, (64, 128, 256)),
        (ShuffleNetV2Backbone, SCALE_S, (116, 232, 464)),
        (ShuffleNetV2Backbone, SCALE_N, (48, 96, 192)),
        (ShuffleNetV2Backbone, {**SCALE_N, "width": 2.0}, (244, 488, 976)),
        (MobileNetV3Backbone, SCALE_S, (40, 112, 160)),
        (MobileNetV3Backbone, SCALE_N, (24, 48, 96)),
    ],
)
def test_scale_picks_the_reference_width(cls, kwargs, out_channels):
    assert build(cls, kwargs).out_channels == out_channels


@pytest.mark.parametrize(("name", "cls", "kwargs", "params"), BACKBONES, ids=IDS)
def test_training_step_backpropagates_to_the_stem(name, cls, kwargs, params):
    model = build(cls, kwargs).train()
    maps = model(torch.randn(2, 3, 32, 64))
    sum(m.mean() for m in maps).backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad is not None
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("cls", "kwargs", "low", "high"),
    [
        (ShuffleNetV2Backbone, {**SCALE_S, "width": 0.5}, 0.49, 0.55),
        (ShuffleNetV2Backbone, {**SCALE_S, "width": 1.0}, 1.97, 2.09),
        (MobileNetV3Backbone, {**SCALE_S, "variant": "large"}, 3.35, 3.65),
        (MobileNetV3Backbone, {**SCALE_S, "variant": "small"}, 0.85, 0.94),
    ],
)
def test_gflops_at_640_within_reference_range(cls, kwargs, low, high):
    # Meta tensors: shapes only, so counting at 640 costs no compute.
    with torch.device("meta"):
        model = build(cls, kwargs).eval()
        image = torch.empty(1, 3, 640, 640)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    gflops = counter.get_total_flops() / 1e9
    # docs/references.md prints the ranges to 2 decimals; the FlopCounterMode end rounds to `low`.
    assert low - 0.005 <= gflops <= high


def test_ghost_operator_sites_are_every_ghostconv_cheap_half():
    operator = RecordingOperator()
    model = build(GhostBackbone, SCALE_S, operator).eval()
    # 4 downsampling GhostConvs + 2 GhostConvs in each of 1 + 2 + 3 + 1 GhostBottlenecks.
    assert len(operator.requests) == 18
    assert {(k, dw) for _, k, dw, _ in operator.requests} == {(5, True)}
    assert Counter(c for c, *_ in operator.requests) == {8: 1, 16: 3, 32: 6, 64: 5, 128: 2, 256: 1}
    # Bottlenecks' second GhostConv is linear; all others use SiLU.
    assert Counter(act for *_, act in operator.requests) == {"True": 11, "False": 7}
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert operator.forward_calls == [1] * 18


def test_shufflenetv2_operator_sites_are_the_stride1_depthwise_convs():
    operator = RecordingOperator()
    model = build(ShuffleNetV2Backbone, {**SCALE_S, "width": 1.0}, operator).eval()
    # Units after the first of each stage: 3 + 7 + 3, each on half the stage's channels.
    assert Counter(operator.requests) == {
        (58, 3, True, "False"): 3,
        (116, 3, True, "False"): 7,
        (232, 3, True, "False"): 3,
    }
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert operator.forward_calls == [1] * 13


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            "large",
            [
                (16, 3, True, "ReLU"),
                (72, 3, True, "ReLU"),
                (120, 5, True, "ReLU"),
                (120, 5, True, "ReLU"),
                (200, 3, True, "Hardswish"),
                (184, 3, True, "Hardswish"),
                (184, 3, True, "Hardswish"),
                (480, 3, True, "Hardswish"),
                (672, 3, True, "Hardswish"),
                (960, 5, True, "Hardswish"),
                (960, 5, True, "Hardswish"),
            ],
        ),
        (
            "small",
            [
                (88, 3, True, "ReLU"),
                (240, 5, True, "Hardswish"),
                (240, 5, True, "Hardswish"),
                (120, 5, True, "Hardswish"),
                (144, 5, True, "Hardswish"),
                (576, 5, True, "Hardswish"),
                (576, 5, True, "Hardswish"),
            ],
        ),
    ],
)
def test_mobilenetv3_operator_sites_are_the_stride1_depthwise_convs(variant, expected):
    operator = RecordingOperator()
    model = build(MobileNetV3Backbone, {**SCALE_S, "variant": variant}, operator).eval()
    assert operator.requests == expected
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert operator.forward_calls == [1] * len(expected)


def test_stride2_ghost_bottleneck_downsamples_without_asking_the_operator():
    operator = RecordingOperator()
    block = GhostBottleneck(16, 32, operator, kernel_size=3, stride=2).eval()
    with torch.no_grad():
        out = block(torch.randn(1, 16, 9, 12))
    assert out.shape == (1, 32, 5, 6)
    assert [c for c, *_ in operator.requests] == [8, 16]


@pytest.mark.parametrize("width", [0.75, 3.0, "1.0"])
def test_shufflenetv2_rejects_unknown_width(width):
    with pytest.raises(ValueError, match=r"width=.* is not one of 0\.5, 1\.0, 1\.5, 2\.0"):
        build(ShuffleNetV2Backbone, {**SCALE_S, "width": width})


@pytest.mark.parametrize("variant", ["medium", "Large", ""])
def test_mobilenetv3_rejects_unknown_variant(variant):
    with pytest.raises(ValueError, match=r"variant=.* is not one of large, small"):
        build(MobileNetV3Backbone, {**SCALE_S, "variant": variant})


@pytest.mark.parametrize(
    ("yaml_name", "overrides", "params"),
    [
        ("ghost", {}, 569_356),
        ("shufflenetv2", {}, 143_136),
        ("shufflenetv2", {"width": 1.0}, 776_420),
        ("mobilenetv3", {}, 870_560),
        ("mobilenetv3", {"variant": "large"}, 2_816_432),
    ],
)
def test_yaml_instantiates_through_the_backbone_seam(yaml_name, overrides, params):
    cfg = OmegaConf.load(CONF_BACKBONE / f"{yaml_name}.yaml")
    cfg = OmegaConf.merge(cfg, overrides)
    model = instantiate(cfg, operator=ConvOperator(), **SCALE_N)
    assert count_params(model) == params


@pytest.mark.parametrize(("scale", "params"), [("s", 5_301_141), ("n", 1_395_145)])
def test_ghost_backbone_with_plain_pan_and_detect_matches_reference(scale, params):
    conf = CONF_BACKBONE.parent
    model = build_detector(
        OmegaConf.load(conf / "backbone" / "ghost.yaml"),
        OmegaConf.load(conf / "neck" / "pan.yaml"),
        OmegaConf.load(conf / "operator" / "conv.yaml"),
        scale=scale,
        nc=80,
    )
    assert count_params(model) == params
