"""Measurement: parameter counts, GFLOPs (thop and FlopCounterMode) and batch-1 latency."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightyolo.measure.flops import flop_counter_gflops, fold_batchnorm, gflops
from lightyolo.measure.latency import measure_latency
from lightyolo.measure.params import count_parameters
from lightyolo.models.detector import Detector, build_detector
from lightyolo.models.layers import Conv

CONF = Path(__file__).resolve().parents[1] / "conf"


def build_baseline(scale: str) -> Detector:
    return build_detector(
        OmegaConf.load(CONF / "backbone" / "c3.yaml"),
        OmegaConf.load(CONF / "neck" / "pan.yaml"),
        OmegaConf.load(CONF / "operator" / "conv.yaml"),
        scale=scale,
        nc=80,
    )


@pytest.fixture(scope="module")
def baselines() -> dict[str, Detector]:
    return {scale: build_baseline(scale) for scale in ("n", "s")}


@pytest.mark.parametrize(
    ("scale", "img_size", "expected"),
    [("n", 640, 4.47), ("n", 320, 1.12), ("s", 640, 16.43), ("s", 320, 4.11)],
)
def test_gflops_match_yolov5_reference_figures(
    baselines: dict[str, Detector], scale: str, img_size: int, expected: float
) -> None:
    assert gflops(baselines[scale], img_size) == pytest.approx(expected, rel=0.01)


def test_flop_counter_cross_check_agrees_with_thop_on_the_conv_only_baseline(baselines: dict[str, Detector]) -> None:
    model = baselines["n"]
    assert flop_counter_gflops(model, 320) == pytest.approx(gflops(model, 320), rel=0.01)


def test_gflops_of_a_non_square_input_scale_with_its_area_for_a_conv_only_model(
    baselines: dict[str, Detector],
) -> None:
    model = baselines["n"]
    assert gflops(model, (256, 384)) == pytest.approx(gflops(model, 320) * 256 * 384 / 320**2, rel=1e-9)


def test_measuring_leaves_the_callers_model_untouched(baselines: dict[str, Detector]) -> None:
    model = baselines["n"].train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gflops(model, 64)
    flop_counter_gflops(model, 64)
    after = model.state_dict()
    assert after.keys() == before.keys()  # no thop total_ops/total_params buffers left behind
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training
    assert all(isinstance(m.bn, nn.BatchNorm2d) for m in model.modules() if isinstance(m, Conv))


def test_folding_batchnorm_keeps_the_eval_output() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Conv(3, 8, 3, 2), Conv(8, 8, 3, 1, groups=8))
    model.train()
    model(torch.rand(4, 3, 16, 16))  # move the running statistics off their defaults
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(folded(x), model(x), rtol=1e-5, atol=1e-6)
    assert all(isinstance(m.bn, nn.Identity) and m.conv.bias is not None for m in folded if isinstance(m, Conv))


class SquareSum(nn.Module):
    """A leaf whose work is a functional op (x·x summed over channels): C·H·W multiply-adds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum(1, keepdim=True)

    def functional_macs(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
        return inputs[0][0].numel()


def test_functional_macs_of_leaf_modules_are_added_by_both_counters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), SquareSum())
    conv_macs = 4 * 3 * 9 * 32 * 48
    square_sum_macs = 4 * 32 * 48
    expected = 2 * (conv_macs + square_sum_macs) / 1e9
    assert gflops(model, (32, 48)) == pytest.approx(expected, rel=1e-12)
    assert flop_counter_gflops(model, (32, 48)) == pytest.approx(expected, rel=1e-12)


def test_count_parameters_counts_only_trainable_ones(baselines: dict[str, Detector]) -> None:
    model = build_baseline("n")
    assert count_parameters(model) == 1_872_157
    model.backbone.requires_grad_(False)
    assert count_parameters(model) == 1_872_157 - 1_046_368


def test_latency_reports_batch_1_timings_and_restores_train_mode() -> None:
    model = nn.Sequential(Conv(3, 8, 3, 2), Conv(8, 8, 3, 1)).train()
    result = measure_latency(model, 64, "cpu", warmup=1, iters=5)
    assert 0 < result.median_ms <= result.p90_ms
    assert result.fps == pytest.approx(1000 / result.median_ms)
    assert (result.device, result.batch, result.warmup, result.iters) == ("cpu", 1, 1, 5)
    assert result.threads == torch.get_num_threads()
    assert result.img_size == (64, 64)
    assert model.training


def test_latency_refuses_zero_iterations() -> None:
    with pytest.raises(ValueError, match="iters >= 1"):
        measure_latency(nn.Conv2d(3, 3, 1), 32, "cpu", warmup=0, iters=0)
