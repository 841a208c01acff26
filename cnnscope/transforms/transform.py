"""Image transformations g that act on images AND on feature maps.

A feature map's cells sit on a grid in image coordinates (centre of cell i = offset + i * stride, from
cnnscope.layers' geometry), so g moves a feature map by moving those centres: each output cell samples the
map at the grid position its centre comes from under g^-1 (bilinear; exact when g maps the grid onto itself).
Pixel centres are at 0 … W-1 and transformations act about the image centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import CnnscopeError

NAMES = ("identity", "hflip", "vflip", "rot90", "rot180", "rotate", "scale")


@dataclass(frozen=True)
class Transform:
    kind: str
    angle: float = 0.0  # degrees, counter-clockwise (rotate)
    factor: float = 1.0  # scale

    @staticmethod
    def parse(text: str) -> Transform:
        """hflip, vflip, rot90, rot180, rotate:DEG, scale:FACTOR (scale defaults to 2^-1/2)."""
        name, _, arg = text.partition(":")
        if name not in NAMES:
            raise CnnscopeError(f"unknown transform '{text}' ({', '.join(NAMES)}; rotate:DEG, scale:FACTOR)")
        if name not in ("rotate", "scale"):
            if arg:
                raise CnnscopeError(f"transform '{text}': {name} takes no argument")
            return Transform(name)
        try:
            value = float(arg) if arg else (45.0 if name == "rotate" else 2 ** -0.5)
        except ValueError:
            raise CnnscopeError(f"transform '{text}': '{arg}' is not a number") from None
        if not math.isfinite(value):
            raise CnnscopeError(f"transform '{text}': '{arg}' is not a finite number")
        if name == "scale" and not 0.1 <= value <= 10:
            raise CnnscopeError(f"transform '{text}': the scale factor must be between 0.1 and 10")
        if name == "rotate" and not -360 <= value <= 360:
            raise CnnscopeError(f"transform '{text}': the angle must be between -360 and 360 degrees")
        return Transform("rotate", angle=value) if name == "rotate" else Transform("scale", factor=value)

    @property
    def label(self) -> str:
        return {"rotate": f"rotate{self.angle:g}", "scale": f"scale{self.factor:.3g}"}.get(self.kind, self.kind)

    def matrix(self) -> torch.Tensor:
        """A with g(p) = A p for p = (y, x) relative to the centre."""
        if self.kind == "identity":
            return torch.eye(2, dtype=torch.float64)
        if self.kind == "hflip":
            return torch.tensor([[1.0, 0], [0, -1.0]], dtype=torch.float64)
        if self.kind == "vflip":
            return torch.tensor([[-1.0, 0], [0, 1.0]], dtype=torch.float64)
        if self.kind == "scale":
            return torch.eye(2, dtype=torch.float64) * self.factor
        angle = {"rot90": 90.0, "rot180": 180.0}.get(self.kind, self.angle)
        t = math.radians(angle)  # counter-clockwise on screen: y points down
        return torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)

    def inverse(self) -> Transform:
        if self.kind == "rotate":
            return Transform("rotate", angle=-self.angle)
        if self.kind == "rot90":
            return Transform("rotate", angle=-90.0)
        if self.kind == "scale":
            return Transform("scale", factor=1.0 / self.factor)
        return self

    # ---------------------------------------------------------------------------------------- images
    def image(self, x: torch.Tensor) -> torch.Tensor:
        """g applied to [N,C,H,W] images (exact for flips and quarter turns, bilinear otherwise)."""
        if self.kind == "identity":
            return x
        if self.kind == "hflip":
            return x.flip(-1)
        if self.kind == "vflip":
            return x.flip(-2)
        if self.kind == "rot180":
            return x.flip(-1).flip(-2)
        if self.kind == "rot90" and x.shape[-1] == x.shape[-2]:
            return torch.rot90(x, 1, dims=(-2, -1))
        return self._warp(x, 1.0, 0.0, x.shape[-2], x.shape[-1], x.shape[-2], x.shape[-1])

    def valid_mask(self, h: int, w: int) -> torch.Tensor:
        """1 where the transformed image has content (rotations and zoom-outs leave empty corners)."""
        return self._warp(torch.ones(1, 1, h, w), 1.0, 0.0, h, w, h, w)[0, 0] > 0.999

    # ---------------------------------------------------------------------------------- feature maps
    def features(self, f: torch.Tensor, stride: float, offset: float, image_size: int,
                 padding: str = "zeros") -> torch.Tensor:
        """g applied to a feature map whose cell i is centred at offset + i*stride in an image of image_size px.

        Cells whose source falls outside the map get zeros, or with padding="border" the nearest edge cell
        (a grid that is not centred in the image — "same" padding on even sizes — loses an edge row to a flip)."""
        if self.kind == "identity":
            return f
        return self._warp(f, stride, offset, f.shape[-2], f.shape[-1], image_size, image_size, padding)

    def valid_cells(self, shape: tuple[int, int], stride: float, offset: float, image_size: int) -> torch.Tensor:
        """[H,W] bool: the cells of a transformed feature map whose source lies inside the map."""
        ones = torch.ones(1, 1, *shape)
        return self.features(ones, stride, offset, image_size)[0, 0] > 0.99

    def _warp(self, f, stride, offset, fh, fw, ih, iw, padding="zeros") -> torch.Tensor:
        a_inv = torch.linalg.inv(self.matrix())
        cy, cx = (ih - 1) / 2.0, (iw - 1) / 2.0
        ys = offset + stride * torch.arange(fh, dtype=torch.float64) - cy
        xs = offset + stride * torch.arange(fw, dtype=torch.float64) - cx
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        src = a_inv @ torch.stack([gy.flatten(), gx.flatten()])  # where each output centre comes from
        sy = ((src[0] + cy - offset) / stride).view(fh, fw)  # in source cell units
        sx = ((src[1] + cx - offset) / stride).view(fh, fw)
        grid = torch.stack([2 * sx / max(fw - 1, 1) - 1, 2 * sy / max(fh - 1, 1) - 1], -1).to(f.device, f.dtype)
        grid = grid.unsqueeze(0).expand(f.shape[0], -1, -1, -1)
        return F.grid_sample(f, grid, mode="bilinear", padding_mode=padding, align_corners=True)
