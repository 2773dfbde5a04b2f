"""Optimiser groups, lr schedules, warmup and the weight EMA (YOLOv5 v7.0 train.py semantics)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightyolo.models.layers import Conv
from lightyolo.train.ema import ModelEMA
from lightyolo.train.optim import (
    BIAS_GROUP,
    build_optimizer,
    lr_lambda,
    warmup_iterations,
    warmup_step,
)

REPO = Path(__file__).resolve().parents[1]


def small_net() -> nn.Sequential:
    """Conv-BN-SiLU, a GroupNorm and a biased 1×1 output conv: every kind of parameter."""
    return nn.Sequential(
        Conv(3, 8, 3),
        nn.GroupNorm(2, 8),
        nn.Conv2d(8, 4, 1),
    )


# --- optimiser groups ------------------------------------------------------------------


def param_ids(group: dict) -> set[int]:
    return {id(p) for p in group["params"]}


def test_norm_weights_and_biases_are_not_decayed():
    net = small_net()
    optimizer = build_optimizer(net, lr0=0.02, momentum=0.9, weight_decay=1e-3)
    biases, decayed, norm_weights = optimizer.param_groups
    assert BIAS_GROUP == 0
    assert param_ids(biases) == {id(net[0].bn.bias), id(net[1].bias), id(net[2].bias)}
    assert param_ids(decayed) == {id(net[0].conv.weight), id(net[2].weight)}
    assert param_ids(norm_weights) == {id(net[0].bn.weight), id(net[1].weight)}
    assert biases["weight_decay"] == 0.0 and norm_weights["weight_decay"] == 0.0
    assert decayed["weight_decay"] == 1e-3
    for group in optimizer.param_groups:
        assert (group["lr"], group["momentum"], group["nesterov"]) == (0.02, 0.9, True)


def test_n_model_groups_match_yolov5_counts():
    from lightyolo.models.detector import build_detector

    model = build_detector(
        OmegaConf.load(REPO / "conf/backbone/c3.yaml"),
        OmegaConf.load(REPO / "conf/neck/pan.yaml"),
        OmegaConf.load(REPO / "conf/operator/conv.yaml"),
        scale="n",
        nc=80,
    )
    optimizer = build_optimizer(model)
    # YOLOv5 prints "57 weight(decay=0.0), 60 weight(decay=0.0005), 60 bias" for yolov5n:
    # 57 Conv-BN layers + 3 Detect convs with bias.
    counts = [len(group["params"]) for group in optimizer.param_groups]
    assert counts == [60, 60, 57]
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )


# --- lr schedule -----------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_lambda_runs_from_one_to_lrf(schedule):
    factor = lr_lambda(10, lrf=0.05, schedule=schedule)
    values = [factor(epoch) for epoch in range(11)]
    assert values[0] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(0.05)
    assert values[5] == pytest.approx((1 + 0.05) / 2)
    assert all(a > b for a, b in zip(values, values[1:]))


def test_cosine_schedule_is_slower_than_linear_early_on():
    cosine, linear = lr_lambda(100, schedule="cosine"), lr_lambda(100, schedule="linear")
    assert cosine(10) == pytest.approx(0.97577, abs=1e-5)  # 1 − 0.99·(1 − cos 0.1π)/2
    assert cosine(10) > linear(10) == pytest.approx(0.901)


def test_unknown_schedule_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'step'.*cosine.*linear"):
        lr_lambda(10, schedule="step")


# --- warmup ----------------------------------------------------------------------------


def test_warmup_iterations_is_three_epochs_but_at_least_100():
    assert warmup_iterations(10) == 100
    assert warmup_iterations(200) == 600
    assert warmup_iterations(50, warmup_epochs=1.5, min_iters=20) == 75


def test_warmup_ramps_bias_lr_down_others_up_and_momentum_up():
    optimizer = build_optimizer(small_net(), lr0=0.01, momentum=0.937)
    factor = lr_lambda(50)
    history = []
    for iteration in range(0, 101):
        warmup_step(
            optimizer, iteration=iteration, warmup_iters=100, epoch=0, lr_factor=factor,
            lr0=0.01, momentum=0.937,
        )
        history.append([(g["lr"], g["momentum"]) for g in optimizer.param_groups])
    first, last = history[0], history[-1]
    assert [lr for lr, _ in first] == pytest.approx([0.1, 0.0, 0.0])
    assert [lr for lr, _ in last] == pytest.approx([0.01, 0.01, 0.01])
    assert first[0][1] == pytest.approx(0.8) and last[0][1] == pytest.approx(0.937)
    bias_lrs = [step[0][0] for step in history]
    weight_lrs = [step[1][0] for step in history]
    momenta = [step[2][1] for step in history]
    assert all(a > b for a, b in zip(bias_lrs, bias_lrs[1:]))
    assert all(a < b for a, b in zip(weight_lrs, weight_lrs[1:]))
    assert all(a < b for a, b in zip(momenta, momenta[1:]))
    assert history[50][1][0] == pytest.approx(0.005)


def test_warmup_targets_the_scheduled_lr_of_the_epoch_and_stops_after_warmup():
    optimizer = build_optimizer(small_net(), lr0=0.01)
    factor = lr_lambda(4, lrf=0.1, schedule="linear")
    kwargs = dict(warmup_iters=10, lr_factor=factor, lr0=0.01, momentum=0.937)
    warmup_step(optimizer, iteration=10, epoch=2, **kwargs)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.0055] * 3)
    for group in optimizer.param_groups:
        group["lr"] = 0.123
    warmup_step(optimizer, iteration=11, epoch=2, **kwargs)
    assert [g["lr"] for g in optimizer.param_groups] == [0.123] * 3


# --- EMA -------------------------------------------------------------------------------


def test_ema_is_a_frozen_eval_copy():
    net = small_net().train()
    ema = ModelEMA(net)
    assert not ema.ema.training and net.training
    assert not any(p.requires_grad for p in ema.ema.parameters())
    assert ema.ema[0].conv.weight.data_ptr() != net[0].conv.weight.data_ptr()


def test_ema_weights_lie_between_initial_and_current():
    torch.manual_seed(0)
    net = small_net().train()
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    ema = ModelEMA(net, decay=0.9, tau=1.0)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(1.0)
    net(torch.randn(2, 3, 8, 8))  # moves BN running stats and num_batches_tracked
    current = net.state_dict()
    for _ in range(3):
        ema.update(net)
    assert ema.updates == 3
    averaged = ema.ema.state_dict()
    for key in ("0.conv.weight", "2.bias", "0.bn.running_mean"):
        low = torch.minimum(initial[key], current[key])
        high = torch.maximum(initial[key], current[key])
        assert (averaged[key] > low).all() and (averaged[key] < high).all(), key
    assert averaged["0.bn.num_batches_tracked"].item() == 1
    # Three updates with decays d_i = 0.9 (1 − e^{−i}): the initial weight keeps Π d_i.
    kept = 1.0
    for i in (1, 2, 3):
        kept *= 0.9 * (1 - torch.exp(torch.tensor(-float(i)))).item()
    expected = kept * initial["2.weight"] + (1 - kept) * current["2.weight"]
    assert torch.allclose(averaged["2.weight"], expected, atol=1e-6)


def test_ema_state_dict_round_trip_restores_updates_and_weights():
    torch.manual_seed(0)
    net = small_net()
    ema = ModelEMA(net, tau=10.0)
    with torch.no_grad():
        net[2].weight.mul_(2.0)
    for _ in range(5):
        ema.update(net)
    restored = ModelEMA(small_net(), tau=10.0)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 5
    assert restored.current_decay() == pytest.approx(ema.current_decay())
    for key, value in ema.ema.state_dict().items():
        assert torch.equal(restored.ema.state_dict()[key], value), key
    with pytest.raises(ValueError, match="updates"):
        restored.load_state_dict({"ema": ema.ema.state_dict()})
