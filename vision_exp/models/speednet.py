"""A small, fast CIFAR network in the spirit of airbench (Jordan, 2024) and Page's ResNet-9.

Three groups, each a conv, a 2x2 max-pool and a second conv, all with batch-norm and GELU; widths
grow 64 -> 256 -> 256 while the image shrinks 32 -> 4, so most compute sits at low resolution. A
residual connection around each group's second conv makes it ResNet-like; the head max-pools to
1x1 and scales the logits down, which keeps the large learning rates of short schedules stable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn


def _conv_bn(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
    ]


class ConvGroup(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: bool, residual: bool) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.MaxPool2d(2) if pool else nn.Identity(),
            nn.BatchNorm2d(out_channels),
            nn.GELU(),
        )
        self.refine = nn.Sequential(*_conv_bn(out_channels, out_channels))
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        refined: Tensor = self.refine(x)
        return x + refined if self.residual else refined


class SpeedNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        widths: Sequence[int] = (32, 64, 256, 256),
        residual: bool = True,
        head_scale: float = 0.125,
    ) -> None:
        """``widths[0]`` is the stem's, then one group per further width; a group halves the
        resolution while it is at least 2x2 (so 8x8 digits work as well as 32x32 CIFAR)."""
        super().__init__()
        layers: list[nn.Module] = _conv_bn(in_channels, widths[0])
        size = image_size
        for in_width, out_width in itertools.pairwise(widths):
            layers.append(ConvGroup(in_width, out_width, pool=size >= 2, residual=residual))
            size = size // 2 if size >= 2 else size
        self.features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.head_scale = head_scale

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(self.features(x))
        return logits * self.head_scale
