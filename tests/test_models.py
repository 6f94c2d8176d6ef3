import pytest
import torch
from torch import nn

from vision_exp.models.resnet import resnet
from vision_exp.models.simple_cnn import SimpleCNN


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 32)])
def test_simple_cnn_fits_every_dataset_shape(channels: int, size: int) -> None:
    model = SimpleCNN(in_channels=channels, num_classes=7, image_size=size).eval()
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 7)


def test_resnet18_has_the_cifar_stem() -> None:
    model = resnet(in_channels=3, num_classes=10, image_size=32, depth=18)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_deeper_resnet_takes_grayscale_and_the_imagenet_stem() -> None:
    model = resnet(in_channels=1, num_classes=100, image_size=64, depth=50, stem="imagenet")
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (7, 7)
    assert model.fc.out_features == 100
    assert model.eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 100)
