"""Involution (arXiv 2103.06255): shapes, the group/reduction rules, maths, MACs, the operator seam."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from lightyolo.measure.flops import flop_counter_gflops, gflops
from lightyolo.models.operators.involution import (
    Involution,
    InvolutionAggregation,
    InvolutionOperator,
    channels_per_kernel,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


def unfold_reference(x: torch.Tensor, kernel: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """The paper's formulation: unfold K×K windows, weight by the group's kernel, sum the taps."""
    batch, channels = x.shape[:2]
    taps = kernel_size**2
    groups = kernel.shape[1] // taps
    out_h, out_w = kernel.shape[-2:]
    windows = F.unfold(x, kernel_size, padding=(kernel_size - 1) // 2, stride=stride)
    windows = windows.view(batch, groups, channels // groups, taps, out_h, out_w)
    weighted = windows * kernel.view(batch, groups, 1, taps, out_h, out_w)
    return weighted.sum(3).view(batch, channels, out_h, out_w)


@pytest.mark.parametrize(("stride", "expected_hw"), [(1, (13, 17)), (2, (7, 9))])
def test_involution_keeps_channels_on_odd_sizes(stride: int, expected_hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    out = Involution(32, 7, stride=stride)(torch.randn(2, 32, 13, 17))
    assert out.shape == (2, 32, *expected_hw)


@pytest.mark.parametrize(
    ("channels", "per_kernel", "groups"),
    [
        (64, 16, 4),
        (58, 2, 29),
        (116, 4, 29),
        (232, 8, 29),
        (72, 12, 6),
        (88, 11, 8),
        (120, 15, 8),
        (24, 12, 2),
        (40, 10, 4),
        (48, 16, 3),
        (13, 13, 1),
        (17, 1, 17),
    ],
)
def test_groups_share_largest_divisor_at_most_16(channels: int, per_kernel: int, groups: int) -> None:
    assert channels_per_kernel(channels, 16) == per_kernel
    involution = Involution(channels, 3)
    assert (involution.group_channels, involution.groups) == (per_kernel, groups)
    assert involution.span.out_channels == 9 * groups
    assert involution(torch.randn(1, channels, 5, 7)).shape == (1, channels, 5, 7)


@pytest.mark.parametrize(("channels", "reduced"), [(64, 16), (116, 29), (24, 6), (8, 4), (3, 4)])
def test_generator_width_is_quarter_with_floor_of_four(channels: int, reduced: int) -> None:
    assert Involution(channels, 3).reduce.conv.out_channels == reduced


def test_parameters_of_involution_64_k7_match_analytic_count() -> None:
    channels, reduced, taps, groups = 64, 16, 49, 4
    generator_reduce = channels * reduced + 2 * reduced  # 1×1 conv without bias, BN weight + bias
    generator_span = reduced * taps * groups + taps * groups  # 1×1 conv with bias
    assert generator_reduce + generator_span == 4_388
    assert sum(p.numel() for p in Involution(channels, 7).parameters()) == 4_388


def test_aggregation_weights_each_window_by_its_pixel_kernel() -> None:
    # 1 channel 3×3 input, K = 3: a kernel that selects the centre tap returns the input, one
    # that selects the top-left tap shifts it down-right with zero padding.
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    centre = torch.zeros(1, 9, 3, 3)
    centre[:, 4] = 1.0
    top_left = torch.zeros(1, 9, 3, 3)
    top_left[:, 0] = 2.0
    aggregate = InvolutionAggregation(3)
    assert torch.equal(aggregate(x, centre), x)
    assert aggregate(x, top_left).view(3, 3).tolist() == [[0, 0, 0], [0, 2, 4], [0, 8, 10]]


@pytest.mark.parametrize(("kernel_size", "stride", "hw"), [(3, 1, (5, 7)), (7, 1, (13, 17)), (3, 2, (9, 6)), (7, 2, (13, 17))])
def test_aggregation_equals_unfold_formulation(kernel_size: int, stride: int, hw: tuple[int, int]) -> None:
    torch.manual_seed(1)
    out_hw = (-(-hw[0] // stride), -(-hw[1] // stride))
    x = torch.randn(2, 6, *hw, dtype=torch.double)
    kernel = torch.randn(2, 3 * kernel_size**2, *out_hw, dtype=torch.double)
    out = InvolutionAggregation(kernel_size, stride)(x, kernel)
    torch.testing.assert_close(out, unfold_reference(x, kernel, kernel_size, stride))


@pytest.mark.parametrize("stride", [1, 2])
def test_aggregation_gradients_match_numerical(stride: int) -> None:
    torch.manual_seed(2)
    x = torch.randn(1, 4, 5, 7, dtype=torch.double, requires_grad=True)
    kernel = torch.randn(1, 2 * 9, -(-5 // stride), -(-7 // stride), dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(InvolutionAggregation(3, stride), (x, kernel))


def test_gradient_reaches_input_and_every_parameter() -> None:
    torch.manual_seed(3)
    involution = Involution(32, 7, stride=2)
    x = torch.randn(2, 32, 11, 9, requires_grad=True)
    involution(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, parameter in involution.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_functional_macs_are_k2_c_h_w_b() -> None:
    aggregate = InvolutionAggregation(7, 2)
    x = torch.randn(3, 32, 13, 17)
    output = aggregate(x, torch.randn(3, 2 * 49, 7, 9))
    assert aggregate.functional_macs((x,), output) == 49 * 32 * 7 * 9 * 3 == 296_352


def test_flops_counters_include_the_aggregation() -> None:
    # Involution(3, 7) on a 3-channel 32×32 image: generator 3→4 and 4→49 (1×1), aggregation
    # 49 taps × 3 channels, per pixel; BN is folded into the generator's first conv.
    macs_per_pixel = 3 * 4 + 4 * 49 + 49 * 3
    expected = 2 * macs_per_pixel * 32 * 32 / 1e9
    model = Involution(3, 7)
    assert gflops(model, 32) == pytest.approx(expected, rel=1e-9)
    assert flop_counter_gflops(model, 32) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("act", "activation_type"), [(True, nn.SiLU), (False, nn.Identity), (nn.ReLU(), nn.ReLU)]
)
def test_operator_builds_involution_bn_activation(act: bool | nn.Module, activation_type: type) -> None:
    operator = InvolutionOperator(kernel_size=5, reduction=2, group_channels=8)
    block = operator(24, 3, depthwise=True, act=act)
    involution, norm, activation = block
    assert isinstance(involution, Involution)
    assert (involution.aggregate.kernel_size, involution.group_channels, involution.reduce.conv.out_channels) == (5, 8, 12)
    assert (norm.eps, norm.momentum) == (1e-3, 0.03)
    assert type(activation) is activation_type
    assert block(torch.randn(1, 24, 9, 11)).shape == (1, 24, 9, 11)


def test_operator_yaml_instantiates_rednet_defaults() -> None:
    operator = instantiate(OmegaConf.load(CONF / "operator" / "involution.yaml"))
    assert repr(operator) == "InvolutionOperator(kernel_size=7, reduction=4, group_channels=16)"
    assert operator(64, 3, depthwise=False)[0].span.out_channels == 49 * 4


@pytest.mark.parametrize("kernel_size", [0, 4])
def test_even_kernel_size_is_rejected(kernel_size: int) -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        Involution(16, kernel_size)
