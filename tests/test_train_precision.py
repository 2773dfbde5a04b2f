"""Mixed precision in training (issue 12, part 3): fp16 on CUDA, opt-in bf16 on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightyolo.models.detector import build_detector
from lightyolo.train.loop import _train_step, setup_training
from lightyolo.train.precision import autocast_dtype, cpu_has_native_bf16
from lightyolo.train.settings import TrainSettings

from conftest import compose_config


@pytest.mark.parametrize(("device", "amp", "cpu_amp", "native", "expected"), [
    ("cuda", True, False, False, torch.float16),
    ("cuda", False, True, True, None),
    ("cpu", True, False, True, None),        # train.amp alone never lowers CPU precision
    ("cpu", False, True, True, torch.bfloat16),
    ("cpu", False, False, True, None),
])
def test_autocast_dtype_per_device_and_keys(device, amp, cpu_amp, native, expected) -> None:
    assert autocast_dtype(device, amp=amp, cpu_amp=cpu_amp, native_bf16=native) == expected


def test_bf16_on_a_cpu_without_native_bf16_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"train\.cpu_amp=true: this CPU has no native bf16"):
        autocast_dtype("cpu", amp=True, cpu_amp=True, native_bf16=False)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 instructions")
def test_cpu_amp_trains_convolutions_in_bf16_and_keeps_weights_and_steps_fp32() -> None:
    cfg = compose_config(["train.cpu_amp=true", "train.img_size=64", "train.batch_size=2",
                          "train.nominal_batch_size=2", "train.warmup_min_iters=0",
                          "train.warmup_epochs=0"])
    settings = TrainSettings.from_config(cfg.train)
    model = build_detector(cfg.backbone, cfg.neck, cfg.operator, scale="n", nc=3)
    state = setup_training(model, settings, torch.device("cpu"), resume=None)
    assert state.autocast_dtype == torch.bfloat16 and not state.scaler.is_enabled()

    conv_out: list[torch.dtype] = []
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda _m, _i, out: conv_out.append(out.dtype))
    before = first_conv.weight.detach().clone()
    imgs = torch.rand(2, 3, 64, 64).to(memory_format=torch.channels_last)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.3], [1, 2, 0.3, 0.6, 0.2, 0.2]])
    items = _train_step(state, imgs, targets, step=1, settings=settings, accumulate=1, where=(0, 0))

    assert conv_out == [torch.bfloat16]
    assert items.dtype == torch.float32 and torch.isfinite(items).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in state.ema.ema.parameters())
    assert not torch.equal(first_conv.weight, before)  # the optimizer stepped, in fp32
