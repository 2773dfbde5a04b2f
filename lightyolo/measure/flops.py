"""GFLOPs by docs/references.md's convention, counted with thop and cross-checked with FlopCounterMode.

Convention: GFLOPs = 2 × multiply-accumulates of the convolutions and linear layers with
BatchNorm folded into the preceding convolution, at the given input size. This reproduces
docs/references.md's 4.47 (YOLOv5n) and 16.43 (YOLOv5s) at 640. YOLOv5's own printout (4.5 / 16.5)
comes from thop on a stride-sized input scaled by area, which is exact only for conv-only
models; here thop runs on the full input so operators with data-dependent work count right.

What thop 0.1.1 counts here: convolutions (bias not counted) and linears, plus whatever it
has rules for that remains after folding (a BatchNorm outside a `layers.Conv`, average
pools, softmax). Its 1-per-element count of nn.Upsample is dropped (data movement, not a
conv); SiLU / Hardswish / max-pool count zero.

Extension protocol: a leaf module (no children) that defines
`functional_macs(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int`
(multiply-adds of functional ops that neither thop nor FlopCounterMode sees, e.g.
Involution's unfold·multiply·sum) has those MACs added by both counters. Such modules are
found by walking the model; nothing lists them.

This is the only module that imports thop.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

with warnings.catch_warnings():
    # thop 0.1.1 compares torch versions with distutils' deprecated LooseVersion at import.
    warnings.simplefilter("ignore", DeprecationWarning)
    import thop
    from thop.profile import register_hooks as THOP_RULES

from lightyolo.models.layers import Conv

ImgSize = int | tuple[int, int]
ThopRule = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every `layers.Conv`'s BatchNorm folded into its conv (eval-mode maths)."""
    folded = copy.deepcopy(model)
    for module in folded.modules():
        if isinstance(module, Conv) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = _fold(module.conv, module.bn)
            module.bn = nn.Identity()
    return folded


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(conv.weight.device)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * scale)
    return fused


def _input(model: nn.Module, img_size: ImgSize) -> torch.Tensor:
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return torch.zeros(1, 3, height, width, device=device)


def _functional_leaves(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if next(m.children(), None) is None and hasattr(m, "functional_macs")]


def _zero_rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    """thop rule for modules the convention does not count."""


def _with_functional_macs(default: ThopRule | None) -> ThopRule:
    def rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if default is not None:
            default(module, inputs, output)
        module.total_ops += float(module.functional_macs(inputs, output))

    return rule


def gflops(model: nn.Module, img_size: ImgSize) -> float:
    """GFLOPs (2 × MACs, BN folded) of one forward pass at `img_size` (int or (height, width)), via thop.

    Profiles a folded copy in eval mode, so `model` is left untouched.
    """
    folded = fold_batchnorm(model).eval()
    custom_ops: dict[type, ThopRule] = {nn.Upsample: _zero_rule}
    for leaf in _functional_leaves(folded):
        custom_ops[type(leaf)] = _with_functional_macs(THOP_RULES.get(type(leaf)))
    macs, _ = thop.profile(folded, inputs=(_input(folded, img_size),), custom_ops=custom_ops, verbose=False)
    return 2 * macs / 1e9


def flop_counter_gflops(model: nn.Module, img_size: ImgSize) -> float:
    """Cross-check of `gflops` with torch's FlopCounterMode (dispatcher-level conv/matmul FLOPs).

    Adds 2 × `functional_macs` of the protocol's leaves, which FlopCounterMode misses too.
    """
    folded = fold_batchnorm(model).eval()
    functional_macs = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        functional_macs.append(int(module.functional_macs(inputs, output)))

    for leaf in _functional_leaves(folded):
        leaf.register_forward_hook(record)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        folded(_input(folded, img_size))
    return (counter.get_total_flops() + 2 * sum(functional_macs)) / 1e9
