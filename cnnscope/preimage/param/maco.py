"""MaCo (Fel et al., NeurIPS 2023): fix the Fourier magnitude to that of natural images, optimise the phase.

Deep networks reward high-frequency, high-energy patterns without limit; the 1/f scaling of the Fourier
parametrisation only slows that drift. Constraining the magnitude spectrum to a natural image's removes
it: whatever the phase, the picture has natural energy at every frequency, and what the optimisation
controls is *where* structure goes. Magnitudes live in the same space as the sigmoid's input
(decorrelated colour, linear pixels around grey), measured on crops of the bundled natural photographs.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F

from ...images import load_image
from .base import Parametrization, logit
from .colour import decorrelated_to_rgb, rgb_to_decorrelated

GAIN = 4.0  # sigmoid(4 u) = 0.5 + u near 0: natural pixel statistics pass almost unchanged, extremes are squashed
NATURAL_IMAGES = ("sample:chelsea", "sample:coffee", "sample:astronaut", "sample:rocket", "sample:ihc")


def _crops(image: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
    """The centre and four corner crops at 3/4 of the shorter side, resized to `size`."""
    _, h, w = image.shape
    side = int(0.75 * min(h, w))
    corners = [((h - side) // 2, (w - side) // 2), (0, 0), (0, w - side), (h - side, 0), (h - side, w - side)]
    return [F.interpolate(image[None, :, y:y + side, x:x + side], size=size, mode="bilinear",
                          antialias=True, align_corners=False)[0] for y, x in corners]


@cache
def natural_magnitude(height: int, width: int) -> torch.Tensor:
    """Mean |rfft2| (ortho) of natural crops around grey in the decorrelated colour basis:
    [3, height, width // 2 + 1]. The DC entry is signed: the mean colour, times sqrt(height * width)."""
    crops = torch.stack([c for src in NATURAL_IMAGES for c in _crops(load_image(src), (height, width))])
    signal = rgb_to_decorrelated(crops - 0.5)  # linear pixels: the sigmoid's slope at 0 is 1 / GAIN
    mean = signal.mean((2, 3), keepdim=True)
    # a Hann window keeps the crops' borders out of the spectrum (a non-periodic crop adds a bright cross on
    # the frequency axes, which would come back as horizontal and vertical streaks); its energy loss is undone
    window = torch.outer(torch.hann_window(height, periodic=False), torch.hann_window(width, periodic=False))
    windowed = (signal - mean) * window / window.square().mean().sqrt()
    magnitude = torch.fft.rfft2(windowed, norm="ortho").abs().mean(0)
    magnitude[:, 0, 0] = mean.mean(0).flatten() * (height * width) ** 0.5  # DC: the mean colour
    return magnitude


class MacoParam(Parametrization):
    """x = sigmoid(4 C irfft2(r e^{i phi})), r fixed (natural images' mean magnitude, or `magnitude`),
    phi [N,3,H,W/2+1] free."""

    name = "maco"

    def __init__(self, n: int, size, magnitude: torch.Tensor | None = None, seed: int = 0):
        super().__init__(n, size)
        mag = natural_magnitude(self.height, self.width) if magnitude is None else magnitude
        self.register_buffer("magnitude", mag.abs().clone())
        self.register_buffer("base_phase", torch.where(mag < 0, torch.pi, 0.0))  # a negative mean colour at DC
        h, w = self.height, self.width
        self.register_buffer("columns", torch.tensor([0] + ([w // 2] if w % 2 == 0 else [])))
        self.register_buffer("mirror", (-torch.arange(h)) % h)
        gen = torch.Generator().manual_seed(seed)
        # uniform random phase: a random natural-spectrum image to start from
        self.phase = torch.nn.Parameter((torch.rand((n, *mag.shape), generator=gen) * 2 - 1) * torch.pi)

    def spectrum(self) -> torch.Tensor:
        """The complex spectrum r e^{i phi}. In the columns kx = 0 (and kx = W/2) coefficient ky pairs with -ky
        (a real image's spectrum is conjugate-symmetric): the phase is made odd there, so the spectrum is one
        of a real image and irfft2 changes no magnitude."""
        edge = self.phase.index_select(-1, self.columns)
        odd = 0.5 * (edge - edge.index_select(-2, self.mirror))
        phase = self.phase.index_copy(-1, self.columns, odd) + self.base_phase
        return torch.polar(self.magnitude.expand_as(phase), phase)

    def forward(self) -> torch.Tensor:
        signal = torch.fft.irfft2(self.spectrum(), s=(self.height, self.width), norm="ortho")
        return torch.sigmoid(GAIN * decorrelated_to_rgb(signal))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> None:
        """Keep the fixed magnitude and take the images' phase (exact when the magnitude is theirs)."""
        signal = rgb_to_decorrelated(logit(images.expand(self.shape)) / GAIN)
        self.phase.copy_(torch.fft.rfft2(signal, norm="ortho").angle())

    def settings(self) -> dict:
        return {"param": self.name}
