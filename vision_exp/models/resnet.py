"""torchvision ResNets adapted to small images.

ImageNet's 7x7 stride-2 stem plus max-pool shrinks a 32x32 CIFAR image to 8x8 before the first block
and costs several points of accuracy; the usual CIFAR stem is a 3x3 stride-1 conv and no max-pool.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet as tv_resnet

BUILDERS = {
    18: tv_resnet.resnet18,
    34: tv_resnet.resnet34,
    50: tv_resnet.resnet50,
    101: tv_resnet.resnet101,
    152: tv_resnet.resnet152,
}
STEMS = ("cifar", "imagenet")


def resnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 18,
    stem: str = "cifar",
    zero_init_residual: bool = False,
) -> tv_resnet.ResNet:
    """A randomly initialised torchvision ResNet of the given depth (18, 34, 50, 101 or 152)."""
    model = BUILDERS[depth](num_classes=num_classes, zero_init_residual=zero_init_residual)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
