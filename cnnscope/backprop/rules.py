"""Backward rules of the non-linear blocks: the only thing that differs between SaliNet, DeConvNet and
DeSaliNet (Mahendran & Vedaldi ECCV'16). Each rule is the forward op unchanged plus a chosen backward.

Rectifiers (ReLU, ReLU6 = hardtanh(0, 6), LeakyReLU), backward signal g, forward input x:
    "gradient"  (SaliNet):   g * 1[x in the active range]        -- the true derivative
    "deconvnet" (DeConvNet): relu(g)                              -- forward mask ignored, signal rectified
    "guided"    (DeSaliNet): relu(g) * 1[x in the active range]   -- both (= guided backprop)
Max-pool:
    "switches":    g goes to the arg-max of each window (the true derivative)
    "centre":      g goes to the centre of each window (no switches: the "bottleneck information" study)
    "uniform":     g spread evenly over each window (no switches)
    "passthrough": g copied to every position of each window
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RECTIFIER_RULES = ("gradient", "deconvnet", "guided")
POOL_RULES = ("switches", "centre", "uniform", "passthrough")


class RectifierRule(torch.autograd.Function):
    """Forward: the rectifier. Backward: the chosen rule, built on aten's fused backward kernels (one pass
    over the tensor for the mask, one more for the rectification)."""

    @staticmethod
    def forward(ctx, x, lo: float, hi: float | None, slope: float, rule: str):
        if slope:
            y = F.leaky_relu(x, slope)
        elif hi is None:
            y = torch.relu(x)
        else:
            y = torch.clamp(x, lo, hi)
        if rule != "deconvnet":  # DeConvNet ignores the forward pass: nothing to keep
            ctx.save_for_backward(x)
        ctx.lo, ctx.hi, ctx.slope, ctx.rule = lo, hi, slope, rule
        return y

    @staticmethod
    def backward(ctx, g):
        if ctx.rule == "deconvnet":
            gx = F.leaky_relu(g, ctx.slope) if ctx.slope else torch.relu(g)
            return gx, None, None, None, None
        x, = ctx.saved_tensors
        if ctx.slope:
            gx = torch.ops.aten.leaky_relu_backward(g, x, ctx.slope, False)
        elif ctx.hi is None:
            gx = torch.ops.aten.threshold_backward(g, x, ctx.lo)
        else:
            gx = torch.ops.aten.hardtanh_backward(g, x, ctx.lo, ctx.hi)
        if ctx.rule == "guided":
            gx = gx.clamp_(min=0)
        return gx, None, None, None, None


def _pool_geometry(kernel, stride, padding, dilation):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    k = pair(kernel)
    s = pair(stride) if stride not in (None, [], ()) else k
    return k, s, pair(padding), pair(dilation)


def _centre_indices(shape_in, shape_out, k, s, p, d, device) -> torch.Tensor:
    """Flat input index of the centre of every pooling window, clipped to the image."""
    h, w = shape_in
    oh, ow = shape_out
    rows = (torch.arange(oh, device=device) * s[0] - p[0] + d[0] * ((k[0] - 1) // 2)).clamp(0, h - 1)
    cols = (torch.arange(ow, device=device) * s[1] - p[1] + d[1] * ((k[1] - 1) // 2)).clamp(0, w - 1)
    return (rows[:, None] * w + cols[None, :]).flatten()


class MaxPoolRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode, rule: str):
        k, s, p, d = _pool_geometry(kernel, stride, padding, dilation)
        y, idx = F.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
        ctx.save_for_backward(idx)
        ctx.geom, ctx.ceil_mode, ctx.rule, ctx.in_shape = (k, s, p, d), ceil_mode, rule, x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        idx, = ctx.saved_tensors
        k, s, p, d = ctx.geom
        n, c, h, w = ctx.in_shape
        if ctx.rule in ("switches", "centre"):
            if ctx.rule == "centre":
                flat = _centre_indices((h, w), g.shape[-2:], k, s, p, d, g.device)
                idx = flat.view(1, 1, -1).expand(n, c, -1)
            gx = torch.zeros(n, c, h * w, dtype=g.dtype, device=g.device)
            gx.scatter_add_(2, idx.reshape(n, c, -1), g.reshape(n, c, -1))
            return gx.view(n, c, h, w), None, None, None, None, None, None
        # No switches: the adjoint of average (or sum) pooling over the same windows.
        with torch.enable_grad():
            z = torch.zeros(ctx.in_shape, dtype=g.dtype, device=g.device, requires_grad=True)
            if d == (1, 1):
                pooled = F.avg_pool2d(z, k, s, p, ctx.ceil_mode, count_include_pad=True)
            else:  # dilated windows: build the sum by unfolding
                cols = F.unfold(z, k, dilation=d, padding=p, stride=s)
                pooled = cols.view(n, c, k[0] * k[1], -1).mean(2).view(g.shape)
            gx, = torch.autograd.grad(pooled, z, g)
        if ctx.rule == "passthrough":
            gx = gx * (k[0] * k[1])
        return gx, None, None, None, None, None, None
