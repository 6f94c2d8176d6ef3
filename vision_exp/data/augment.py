"""Augmentation of whole uint8 batches on the training device.

torchvision's v2 transforms draw one set of random parameters per call, so a batch would share one
crop and one flip; here every image gets its own, drawn from an explicit generator so that runs,
resumes and DDP ranks are reproducible.

The crop (a translation with zero padding) and the flip are one ``gather`` over the padded uint8
batch: the flip only reverses the column indices, so the batch is read once and written once before
the float conversion, which is why this path is several times faster than per-image PIL transforms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class BatchAugment:
    def __init__(
        self,
        mean: list[float],
        std: list[float],
        crop_padding: int,
        hflip: bool,
        channels_last: bool = False,
    ) -> None:
        self.mean = mean
        self.std = std
        self.crop_padding = crop_padding
        self.hflip = hflip
        # NHWC batches for a channels_last model: converting here saves one copy inside the model.
        self.channels_last = channels_last
        self._stats: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def _scale(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Mean and 1/std in the 0..255 range, so normalising is one subtract and one multiply."""
        if device not in self._stats:
            mean = torch.tensor(self.mean, device=device).mul_(255.0)
            inv_std = torch.tensor(self.std, device=device).mul_(255.0).reciprocal_()
            self._stats[device] = (mean[:, None, None], inv_std[:, None, None])
        return self._stats[device]

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 NCHW -> float NCHW, normalised with the dataset's statistics."""
        mean, inv_std = self._scale(images.device)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        floats = images.to(dtype=torch.float32, memory_format=memory_format)
        return floats.sub_(mean).mul_(inv_std)

    def train(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Random translation (a crop of the zero-padded image) and flip, then normalise."""
        if self.crop_padding > 0 or self.hflip:
            images = self._crop_and_flip(images, generator)
        return self.normalize(images)

    def _crop_and_flip(self, images: Tensor, generator: torch.Generator) -> Tensor:
        n, c, h, w = images.shape
        pad = self.crop_padding
        device = images.device
        offsets = torch.randint(
            0, 2 * pad + 1, (2, n), generator=generator, device=generator.device
        )
        flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
        offsets, flip = offsets.to(device), flip.to(device)
        padded = F.pad(images, (pad, pad, pad, pad)) if pad > 0 else images
        columns = torch.arange(w, device=device).expand(n, w)
        if self.hflip:
            columns = torch.where(flip[:, None], columns.flip(1), columns)
        columns = columns + offsets[1][:, None]
        rows = torch.arange(h, device=device)[None, :] + offsets[0][:, None]
        # Flat positions in each padded (h + 2 pad) x (w + 2 pad) plane, the same for every channel.
        flat = rows[:, :, None] * (w + 2 * pad) + columns[:, None, :]
        index = flat.reshape(n, 1, h * w).expand(n, c, h * w)
        return padded.reshape(n, c, -1).gather(2, index).reshape(n, c, h, w)
