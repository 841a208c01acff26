"""Spectral parametrisation: optimise the image's Fourier coefficients, scaled by 1/f.

A pixel-space gradient is dominated by high frequencies (a CNN's strided early layers alias them into
everything), so pixel optimisation drifts to high-frequency noise. Scaling each coefficient by 1/f^d
makes a unit step in the free variables produce an image with the spectrum of natural images (amplitude
~ 1/f), and preconditions the optimisation towards low frequencies (Olah et al., Distill 2017).
Combined with the decorrelated colour basis and a sigmoid, as Lucid does.
"""

from __future__ import annotations

import torch

from .base import Parametrization, logit
from .colour import COLOUR_SQRT, rgb_to_decorrelated

AMPLITUDE = 4.0  # the signal is divided by this before the sigmoid: a unit-sd spectrum is not saturated


def frequencies(h: int, w: int) -> torch.Tensor:
    """|f| in cycles per pixel of every coefficient of an rfft2 of an h x w image: [h, w // 2 + 1]."""
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.rfftfreq(w).view(1, -1)
    return (fy * fy + fx * fx).sqrt()


def spectrum_scale(h: int, w: int, decay: float = 1.0) -> torch.Tensor:
    """1 / max(|f|, 1/max(h, w))^decay: the lowest non-zero frequency also bounds the DC term's gain."""
    return 1.0 / frequencies(h, w).clamp_min(1.0 / max(h, w)) ** decay


class FourierParam(Parametrization):
    """x = sigmoid(C irfft2(s * z) / 4): z complex [N,3,H,W/2+1], s = 1/f^decay, C the colour
    decorrelation (identity with decorrelate=False)."""

    name = "fourier"

    def __init__(self, n: int, size, decay: float = 1.0, decorrelate: bool = True, sd: float = 0.01,
                 seed: int = 0):
        super().__init__(n, size)
        self.decay, self.decorrelate = decay, decorrelate
        self.register_buffer("scale", spectrum_scale(self.height, self.width, decay))
        self.register_buffer("scale_ri", self.scale[..., None].expand(*self.scale.shape, 2).contiguous())  # re, im
        self.register_buffer("mixing", (COLOUR_SQRT if decorrelate else torch.eye(3)) / AMPLITUDE)
        gen = torch.Generator().manual_seed(seed)
        coeffs = (self.n, 3, self.height, self.width // 2 + 1, 2)  # real and imaginary parts
        self.z = torch.nn.Parameter(torch.randn(coeffs, generator=gen) * sd)

    def signal(self) -> torch.Tensor:
        """The image before colour mixing and the sigmoid, [N,3,H,W]."""
        spectrum = torch.view_as_complex(self.z) * self.scale
        return torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="ortho") / AMPLITUDE

    def forward(self) -> torch.Tensor:
        # colour mixing, 1/f and 1/AMPLITUDE are linear: applied to the half spectrum (h (w/2+1) coefficients,
        # not h w pixels) as one channel matmul and one product, before a single inverse FFT per step
        z = (self.mixing @ self.z.reshape(self.n, 3, -1)).view_as(self.z) * self.scale_ri
        return torch.sigmoid(torch.fft.irfft2(torch.view_as_complex(z), s=(self.height, self.width), norm="ortho"))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> None:
        t = logit(images.expand(self.shape))
        if self.decorrelate:
            t = rgb_to_decorrelated(t)
        spectrum = torch.fft.rfft2(t * AMPLITUDE, norm="ortho") / self.scale
        self.z.copy_(torch.view_as_real(spectrum))

    def settings(self) -> dict:
        return {"param": self.name, "decay": self.decay, "decorrelate": self.decorrelate}
