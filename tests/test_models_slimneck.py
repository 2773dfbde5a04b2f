"""Slim-neck (arXiv 2206.02424): GSConv shuffle and sizes, VoVGSCSP, SlimNeck on any backbone, exact figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from lightyolo.measure.flops import gflops
from lightyolo.measure.params import part_parameter_counts
from lightyolo.models.detector import build_detector
from lightyolo.models.operators.involution import Involution, InvolutionOperator
from lightyolo.models.blocks import channel_shuffle
from lightyolo.models.necks.slim import GSBottleneck, GSConv, SlimNeck, VoVGSCSP
from lightyolo.models.operators.conv import ConvOperator

CONF = Path(__file__).resolve().parents[1] / "conf"


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_channel_shuffle_of_two_groups_alternates_first_and_second_half() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_gsconv_output_interleaves_dense_and_depthwise_channels() -> None:
    torch.manual_seed(0)
    gsconv = GSConv(4, 6, 3, 2, operator=ConvOperator()).eval()
    x = torch.randn(2, 4, 9, 7)
    dense = gsconv.cv1(x)
    depthwise = gsconv.cv2(dense)
    expected = torch.stack(
        [dense[:, 0], depthwise[:, 0], dense[:, 1], depthwise[:, 1], dense[:, 2], depthwise[:, 2]], 1
    )
    out = gsconv(x)
    assert out.shape == (2, 6, 5, 4)
    torch.testing.assert_close(out, expected)


def test_gsconv_parameters_are_dense_half_plus_depthwise_5x5() -> None:
    gsconv = GSConv(8, 12, 3, 2, operator=ConvOperator())
    dense = 8 * 6 * 9 + 2 * 6  # 3×3 conv to 6 channels + BN
    depthwise = 6 * 25 + 2 * 6  # depthwise 5×5 + BN
    assert count(gsconv) == dense + depthwise == 606
    assert gsconv.cv2.conv.groups == 6


def test_gsconv_rejects_odd_out_channels() -> None:
    with pytest.raises(ValueError, match="out_channels must be even"):
        GSConv(8, 7, operator=ConvOperator())


def test_gsbottleneck_sums_lighting_path_and_linear_shortcut() -> None:
    torch.manual_seed(1)
    block = GSBottleneck(16, 16, ConvOperator(), expansion=1.0).eval()
    x = torch.randn(1, 16, 6, 6)
    torch.testing.assert_close(block(x), block.conv_lighting(x) + block.shortcut(x))
    assert isinstance(block.shortcut.act, nn.Identity)
    assert isinstance(block.conv_lighting[1].cv1.act, nn.Identity)


def test_vovgscsp_has_n_bottlenecks_and_no_unused_res_conv() -> None:
    block = VoVGSCSP(48, 64, 2, ConvOperator())
    assert len(block.gsb) == 2
    assert not hasattr(block, "res")
    # cv1, cv2: 48→32; cv3: 64→64; each bottleneck: GSConv 32→32 (1×1), GSConv 32→32 (3×3), 1×1 shortcut.
    gsconv_1x1 = 32 * 16 + 32 + 16 * 25 + 32
    gsconv_3x3 = 32 * 16 * 9 + 32 + 16 * 25 + 32
    shortcut = 32 * 32 + 64
    expected = 2 * (48 * 32 + 64) + (64 * 64 + 128) + 2 * (gsconv_1x1 + gsconv_3x3 + shortcut)
    assert count(block) == expected == 21_696
    assert block(torch.randn(1, 48, 5, 5)).shape == (1, 64, 5, 5)


@pytest.mark.parametrize(
    ("in_channels", "width", "expected_out"),
    [((116, 232, 464), 0.5, (128, 256, 512)), ((24, 48, 96), 0.25, (64, 128, 256))],
)
def test_slimneck_fuses_any_backbone_widths(
    in_channels: tuple[int, int, int], width: float, expected_out: tuple[int, int, int]
) -> None:
    torch.manual_seed(2)
    neck = SlimNeck(in_channels, width, 0.33, ConvOperator())
    features = [torch.randn(1, c, 8 // 2**i, 12 // 2**i) for i, c in enumerate(in_channels)]
    outputs = neck(features)
    assert neck.out_channels == expected_out
    assert neck.strides == (8, 16, 32)
    assert [tuple(o.shape) for o in outputs] == [
        (1, expected_out[0], 8, 12),
        (1, expected_out[1], 4, 6),
        (1, expected_out[2], 2, 3),
    ]


def test_slim_yaml_instantiates_slimneck_with_involution_at_every_gsconv() -> None:
    neck = instantiate(
        OmegaConf.load(CONF / "neck" / "slim.yaml"),
        in_channels=(64, 128, 256),
        width_multiple=0.25,
        depth_multiple=0.33,
        operator=InvolutionOperator(),
    )
    assert isinstance(neck, SlimNeck)
    gsconvs = [m for m in neck.modules() if isinstance(m, GSConv)]
    # 4 neck convs + 4 VoVGSCSPs × 1 bottleneck × 2 GSConvs.
    assert len(gsconvs) == 12
    assert all(isinstance(g.cv2[0], Involution) for g in gsconvs)
    outputs = neck([torch.randn(1, 64, 8, 8), torch.randn(1, 128, 4, 4), torch.randn(1, 256, 2, 2)])
    assert [o.shape[1] for o in outputs] == [64, 128, 256]


# Exact counts of this implementation; docs/references.md's analytic "≈ 1.67 M, 4.1 GFLOPs" (n)
# and "≈ 6.40 M, 15.1 GFLOPs" (s) for C3 backbone + slim-neck + Detect, 640, nc 80.
@pytest.mark.parametrize(
    ("scale", "neck_params", "total_params", "gflops_640"),
    [("n", 508_320, 1_669_693, 4.1449472), ("s", 1_999_680, 6_400_381, 15.079424)],
)
def test_c3_slimneck_detector_matches_reference_size(
    scale: str, neck_params: int, total_params: int, gflops_640: float
) -> None:
    model = build_detector(
        OmegaConf.load(CONF / "backbone" / "c3.yaml"),
        OmegaConf.load(CONF / "neck" / "slim.yaml"),
        OmegaConf.load(CONF / "operator" / "conv.yaml"),
        scale=scale,
        nc=80,
    )
    counts = part_parameter_counts(model)
    assert (counts["neck"], counts["total"]) == (neck_params, total_params)
    # Conv-only model: thop at 320 is exactly a quarter of 640.
    measured = 4 * gflops(model, 320)
    assert measured == pytest.approx(gflops_640, rel=1e-6)
    assert round(total_params / 1e6, 2) == {"n": 1.67, "s": 6.40}[scale]
    assert round(measured, 1) == {"n": 4.1, "s": 15.1}[scale]
