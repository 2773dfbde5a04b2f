"""The backbone/neck seam is checked at build: a part that breaks it fails with one line
naming its class and what it lacks or mismatches (lightyolo/models/contracts.py)."""

from __future__ import annotations

import pytest
import torch

from lightyolo.models.backbones.c3 import C3Backbone
from lightyolo.models.contracts import ContractError
from lightyolo.models.detector import build_detector
from lightyolo.models.necks.pan import PANNeck

CONV = {"_target_": "lightyolo.models.operators.conv.ConvOperator"}
PAN = {"_target_": "lightyolo.models.necks.pan.PANNeck"}
C3 = {"_target_": "lightyolo.models.backbones.c3.C3Backbone"}


class NoStridesBackbone(C3Backbone):
    strides = None


class TwoChannelBackbone(C3Backbone):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.out_channels = self.out_channels[:2]


class MisdeclaredBackbone(C3Backbone):
    """Declares P5 with one channel more than its forward gives."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p3, p4, p5 = self.out_channels
        self.out_channels = (p3, p4, p5 + 1)


class HalfStrideNeck(PANNeck):
    strides = (4, 8, 16)


def build_error(backbone: dict, neck: dict = PAN) -> str:
    with pytest.raises(ContractError) as error:
        build_detector(backbone, neck, CONV, scale="n", nc=3)
    message = str(error.value)
    assert "\n" not in message
    return message


def target(cls: type) -> dict:
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}"}


def test_a_backbone_without_strides_is_named_with_what_it_lacks() -> None:
    message = build_error(target(NoStridesBackbone))
    assert message.startswith("conf/backbone: NoStridesBackbone does not declare strides")


def test_out_channels_that_are_not_three_ints_are_rejected() -> None:
    message = build_error(target(TwoChannelBackbone))
    assert "TwoChannelBackbone must declare out_channels as 3 ints" in message


def test_declared_channels_are_checked_against_a_forward() -> None:
    message = build_error(target(MisdeclaredBackbone))
    assert "MisdeclaredBackbone declares out_channels (64, 128, 257)" in message
    assert "(256, 2, 2)" in message  # what the 64×64 forward gave at P5


def test_a_neck_whose_strides_differ_from_the_backbone_is_rejected() -> None:
    message = build_error(C3, target(HalfStrideNeck))
    assert message == (
        "conf/neck: HalfStrideNeck declares strides (4, 8, 16) but the backbone C3Backbone "
        "gives (8, 16, 32)"
    )


def test_the_build_check_leaves_batchnorm_statistics_untouched() -> None:
    torch.manual_seed(0)
    model = build_detector(C3, PAN, CONV, scale="n", nc=3)
    assert model.training
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert int(module.num_batches_tracked) == 0
            assert torch.equal(module.running_mean, torch.zeros_like(module.running_mean))
