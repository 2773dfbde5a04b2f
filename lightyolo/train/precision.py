"""The dtype the training forward autocasts to: fp16 with loss scaling on CUDA (`train.amp`),
bf16 on a CPU with native bf16 instructions (`train.cpu_amp`), otherwise full fp32.

Weights, optimizer state, EMA and evaluation stay fp32; autocast lowers only the forward's
convolutions and matmuls (the loss's reductions stay fp32, as autocast's op lists decide).
bf16 keeps fp32's exponent range, so it needs no loss scaling.
"""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose instructions compute in bf16 (AVX512-BF16 or AMX), where oneDNN's bf16
    convolutions are fast; elsewhere it emulates them, slower than fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(device_type: str, *, amp: bool, cpu_amp: bool, native_bf16: bool) -> torch.dtype | None:
    """The autocast dtype for training on `device_type` ("cuda" / "cpu" / ...), or None for fp32.

    Raises ValueError when bf16 is asked for on a CPU without native bf16: emulated bf16 would
    be slower than fp32 and would still be recorded as a bf16 run."""
    if device_type == "cuda":
        return torch.float16 if amp else None
    if device_type == "cpu" and cpu_amp:
        if not native_bf16:
            raise ValueError("train.cpu_amp=true: this CPU has no native bf16 (AVX512-BF16 or AMX) "
                             "instructions; set train.cpu_amp=false")
        return torch.bfloat16
    return None
