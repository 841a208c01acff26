"""Feed-forward texture and style networks (Ulyanov et al. ICML'16, Johnson et al. ECCV'16), trained
against the same Gram loss with the analysed network frozen.

Both generators use instance normalisation and nearest-neighbour upsampling followed by a convolution
(no transposed convolutions, hence no checkerboard). Checkpoints are safetensors files holding the
generator, the Adam state and, in their metadata, the settings and the loss history, so training resumes
exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_images, random_crops, stream_images
from ..device import of as device_of
from ..errors import CnnscopeError
from ..images import load_image
from ..layers import Capture
from ..memory import check_bytes
from ..models import Model
from ..models.folding import for_optimisation
from ..progress import steps
from ..store import load_tensors, save_tensors
from .objectives import Context, Representation
from .style import default_content_layer, default_style_layers, style_objective, style_target


def _conv_block(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride), nn.InstanceNorm2d(cout, affine=True),
            nn.LeakyReLU(0.2)]


class TextureGenerator(nn.Module):
    """Noise [N, noise, S/2^levels, S/2^levels] -> image [N, 3, S, S] in [0, 1]."""

    def __init__(self, noise_channels: int = 8, width: int = 32, levels: int = 3):
        super().__init__()
        self.noise_channels, self.levels = noise_channels, levels
        layers: list[nn.Module] = _conv_block(noise_channels, width) + _conv_block(width, width)
        for _ in range(levels):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_conv_block(width, width),
                       *_conv_block(width, width)]
        layers += [nn.Conv2d(width, 3, 1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def noise(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        s = max(1, size // 2 ** self.levels)
        # drawn on the CPU (same noise on every device), used where the network is
        return torch.rand(n, self.noise_channels, s, s, generator=generator).to(device_of(self))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_block(width, width)[:-1], nn.LeakyReLU(0.2), *_conv_block(width, width)[:-1])

    def forward(self, x):
        return x + self.body(x)


class StyleGenerator(nn.Module):
    """Image [N,3,H,W] in [0,1] -> stylised image of the same size (H, W multiples of 4)."""

    def __init__(self, width: int = 16, residuals: int = 3):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_conv_block(3, w, 9), *_conv_block(w, 2 * w, 3, 2), *_conv_block(2 * w, 4 * w, 3, 2),
            *[_Residual(4 * w) for _ in range(residuals)],
            nn.Upsample(scale_factor=2, mode="nearest"), *_conv_block(4 * w, 2 * w),
            nn.Upsample(scale_factor=2, mode="nearest"), *_conv_block(2 * w, w),
            nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@dataclass
class NetSettings:
    mode: str  # "texture" or "style"
    model: str
    style: str
    size: int = 128
    batch: int = 4
    lr: float = 1e-3
    iters: int = 1500
    seed: int = 0
    style_layers: list[str] = field(default_factory=list)
    content_layer: str | None = None
    style_weight: float = 1.0
    content_weight: float = 1.0
    temperature: float | None = None
    arch: dict = field(default_factory=dict)
    content: str | None = None  # folder of content images (style mode); None = bundled samples


def build_generator(settings: NetSettings) -> nn.Module:
    if settings.mode == "texture":
        return TextureGenerator(**settings.arch)
    if settings.mode == "style":
        return StyleGenerator(**settings.arch)
    raise CnnscopeError(f"unknown generator mode '{settings.mode}' (texture or style)")


def content_pool(folder: str | None) -> Sequence[torch.Tensor]:
    """Style-mode content images: the first nine bundled photographs (held), or a folder's, each decoded when a
    crop is drawn from it (a COCO-sized folder would not fit in memory decoded)."""
    return stream_images(folder) if folder else load_images(None, 9)


GENERATOR_FORMAT = "cnnscope-generator-1"


def save_checkpoint(path: Path, net: nn.Module, opt: torch.optim.Optimizer, settings: NetSettings,
                    iteration: int, history: list[float]) -> None:
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    names = {id(p): n for n, p in net.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if torch.is_tensor(value):
                    tensors[f"adam.{names[id(p)]}.{key}"] = value.detach()
    save_tensors(tensors, path, GENERATOR_FORMAT, settings=json.dumps(asdict(settings)), iteration=str(iteration),
                 history=json.dumps(history))


def load_checkpoint(path: str | Path) -> tuple[nn.Module, NetSettings, dict]:
    tensors, meta = load_tensors(path, GENERATOR_FORMAT, "generator file")
    settings = NetSettings(**json.loads(meta["settings"]))
    net = build_generator(settings)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state = {"iteration": int(meta["iteration"]), "history": json.loads(meta["history"]),
             "adam": {k[5:]: v for k, v in tensors.items() if k.startswith("adam.")}}
    return net, settings, state


def _restore_adam(opt: torch.optim.Optimizer, net: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for name, p in net.named_parameters():
        entries = {key.split(".")[-1]: v for key, v in saved.items() if key.rsplit(".", 1)[0] == name}
        if entries:
            opt.state[p] = {k: (v if k != "step" else v.clone()) for k, v in entries.items()}


def train_generator(model: Model, settings: NetSettings, out: str | Path, *, resume: bool = False,
                    save_every: int = 100, progress: bool = True) -> dict:
    """Train (or resume training of) a texture/style network; returns the loss history and timing."""
    out = Path(out)
    settings.style_layers = list(settings.style_layers or default_style_layers(model))
    if settings.mode == "style":
        settings.content_layer = settings.content_layer or default_content_layer(model)
    torch.manual_seed(settings.seed)
    start_iter, history = 0, []
    net = build_generator(settings).to(model.device)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    if resume and out.is_file():
        net, saved, state = load_checkpoint(out)
        if asdict(saved) | {"iters": settings.iters} != asdict(settings):  # only the length may change
            raise CnnscopeError(f"{out} was trained with other settings; use another --out or the same options")
        net.to(model.device)
        opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
        _restore_adam(opt, net, state["adam"])
        for slot in opt.state.values():  # the moments follow their parameters
            for k, v in slot.items():
                if torch.is_tensor(v) and v.dim():
                    slot[k] = v.to(model.device)
        start_iter, history = state["iteration"], state["history"]
    style_img = load_image(settings.style)
    layers = settings.style_layers
    target = style_target(model, style_img, layers, settings.size, settings.temperature)
    objective = (settings.style_weight * style_objective(target, temperature=settings.temperature)).to(model.device)
    need = list(layers)
    contents = None
    if settings.mode == "style":
        need.append(settings.content_layer)
        contents = content_pool(settings.content)
    pp = model.preprocess
    mean = torch.tensor(pp.mean, device=model.device).view(1, 3, 1, 1)
    started = time.perf_counter()
    interrupted = False
    with Capture(for_optimisation(model, need), need) as phi:  # the loss network with its BatchNorms folded
        bar = steps(settings.iters, f"train {settings.mode} net", show=progress, done=start_iter)
        try:
            for it in range(start_iter, settings.iters):
                gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + it)  # data stream fixed per step
                if settings.mode == "texture":
                    images = net(net.noise(settings.batch, settings.size, gen))
                    obj = objective
                else:
                    batch = random_crops(contents, settings.batch, settings.size, gen).to(model.device)
                    with torch.no_grad():
                        phi_c = phi(pp.normalize(batch))[settings.content_layer]
                    images = net(batch)
                    obj = objective + settings.content_weight * Representation(settings.content_layer, phi_c)
                x = 255.0 * (images - mean)  # centred 0-255 units, as everywhere in the pre-image code
                loss = obj(Context(x, phi(pp.normalize(images)))).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                history.append(float(loss.detach()))
                bar.update(1)
                if len(history) % 10 == 0:
                    bar.postfix(f"loss={history[-1]:.4g}")
                if (it + 1) % save_every == 0 or it + 1 == settings.iters:
                    save_checkpoint(out, net, opt, settings, it + 1, history)
        except KeyboardInterrupt:  # keep every finished step: history has one entry per completed step
            interrupted = True
            save_checkpoint(out, net, opt, settings, len(history), history)
        finally:
            bar.close()
    return {"history": history, "seconds": time.perf_counter() - started, "interrupted": interrupted,
            "iterations": len(history), "file": str(out)}


@torch.no_grad()
def apply_generator(net: nn.Module, settings: NetSettings, image: torch.Tensor | None = None,
                    size: int | None = None, seed: int = 0) -> torch.Tensor:
    """One forward pass: a texture (texture mode, any size) or the stylised image (style mode)."""
    net.eval()
    if settings.mode == "texture":
        size = size or settings.size
        step = 2 ** net.levels
        size = max(step, int(math.ceil(size / step)) * step)
        _check_picture(size, size)
        with torch.no_grad():
            return net(net.noise(1, size, torch.Generator().manual_seed(seed)))[0]
    if image is None:
        raise CnnscopeError("a style network needs an input image")
    x = image.unsqueeze(0)
    h, w = x.shape[-2:]
    if size:
        scale = size / min(h, w)
        h, w = round(h * scale), round(w * scale)
    h, w = max(4, h // 4 * 4), max(4, w // 4 * 4)
    _check_picture(h, w)
    x = F.interpolate(x.to(device_of(net)), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        return net(x)[0]


def _check_picture(h: int, w: int) -> None:
    # a few full-resolution activations of up to 32 channels (padded) are alive at once: ~128 floats a pixel
    check_bytes(4.0 * 128 * h * w, f"a {w}x{h} px picture from this network", "a smaller --size")
