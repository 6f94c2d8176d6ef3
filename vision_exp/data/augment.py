"""Augmentation of whole uint8 batches on the training device.

torchvision's v2 transforms draw one set of random parameters per call, so a batch would share one
crop and one flip; here every image gets its own, drawn from an explicit generator so that runs,
resumes and DDP ranks are reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF


class BatchAugment:
    def __init__(self, mean: list[float], std: list[float], crop_padding: int, hflip: bool) -> None:
        self.mean = mean
        self.std = std
        self.crop_padding = crop_padding
        self.hflip = hflip

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 NCHW -> float NCHW, normalised with the dataset's statistics."""
        normalized: Tensor = TF.normalize(images.float().div_(255.0), self.mean, self.std)
        return normalized

    def train(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Random crop with zero padding and random horizontal flip, then normalise."""
        if self.crop_padding > 0:
            images = self._random_crop(images, generator)
        if self.hflip:
            flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < 0.5
            flip = flip.to(images.device)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return self.normalize(images)

    def _random_crop(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = images.shape
        pad = self.crop_padding
        padded = F.pad(images, (pad, pad, pad, pad))
        offsets = torch.randint(
            0, 2 * pad + 1, (2, n), generator=generator, device=generator.device
        ).to(images.device)
        device = images.device
        rows = (torch.arange(h, device=device)[None, :] + offsets[0][:, None])[:, None, :, None]
        cols = (torch.arange(w, device=device)[None, :] + offsets[1][:, None])[:, None, None, :]
        batch = torch.arange(n, device=device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
        return padded[batch, channels, rows, cols]
