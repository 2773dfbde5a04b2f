"""My own lightyolo modules: a dilated-convolution operator and a plain backbone."""

from torch import nn

from lightyolo.models.layers import Conv, scale_width


class DilatedConv:
    """Operator: the block's k×k convolution, dilated (a wider view for the same weights)."""

    def __init__(self, dilation: int = 2) -> None:
        self.dilation = dilation

    def __call__(self, channels, kernel_size, *, depthwise, act=True):
        groups = channels if depthwise else 1
        return Conv(channels, channels, kernel_size, groups=groups, dilation=self.dilation, act=act)


class PlainBackbone(nn.Module):
    """Backbone: five stride-2 convs, each followed by the run's operator (depthwise 3×3)."""

    strides = (8, 16, 32)

    def __init__(self, width_multiple, depth_multiple, operator, base=64):
        super().__init__()
        widths = [scale_width(base * 2**i, width_multiple) for i in range(5)]
        self.stages = nn.ModuleList(
            nn.Sequential(Conv(c_in, c, 3, 2), operator(c, 3, depthwise=True))
            for c_in, c in zip([3, *widths], widths)
        )
        self.out_channels = tuple(widths[2:])

    def forward(self, x):
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps[2:]  # P3, P4, P5
