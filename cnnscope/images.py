"""Images in and out: load any Pillow-readable file or a bundled sample, save PNGs atomically.

Image folders, labels and splits are in `cnnscope.data`; other files in `cnnscope.store`.

Images inside cnnscope are float32 tensors of shape [3, H, W] with values in [0, 1].
Model-specific resizing and normalisation live in `cnnscope.models.Preprocess`.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import warnings
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CnnscopeError
from .store import atomic_path

# Bundled samples (scikit-image ships them; no download needed). name -> skimage.data function.
SAMPLES = {
    "chelsea": "chelsea",
    "coffee": "coffee",
    "astronaut": "astronaut",
    "rocket": "rocket",
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "retina": "retina",
    "ihc": "immunohistochemistry",
    "camera": "camera",
    "coins": "coins",
    "moon": "moon",
    "hubble": "hubble_deep_field",
    "colorwheel": "colorwheel",
    "logo": "logo",
}

MIN_SIDE = 8  # px; anything smaller carries no usable content for a CNN
MAX_PIXELS = 64_000_000  # 64 megapixels; larger inputs are almost surely a mistake (or a decompression bomb)


def source_stem(source) -> str:
    """What output files are named after: NAME for ``sample:NAME``, else the file's stem (never its folders,
    so outputs of /deep/path/x.png are x_..., not _deep_path_x.png_...); "image" for an in-memory picture."""
    if not isinstance(source, (str, os.PathLike)):
        return "image"
    text = str(source)
    return text[len("sample:"):] if text.startswith("sample:") else Path(text).stem


def sample_names() -> list[str]:
    """The bundled photographs, usable as ``sample:NAME`` wherever an image is asked for."""
    return sorted(SAMPLES)


def load_image(source) -> torch.Tensor:
    """One picture as a float32 [3, H, W] tensor in [0, 1], whatever form it comes in.

    Parameters
    ----------
    source : str, PathLike, PIL.Image, numpy array or Tensor
        A file path; ``sample:NAME`` (a bundled photograph); a PIL image (any mode); a numpy array HxW, HxWx3
        or HxWx4 (uint8, uint16, bool, or float in [0, 1]); a tensor [3,H,W], [1,H,W], [H,W] or [1,3,H,W]
        (float in [0, 1] or uint8). Files: grayscale, palette, alpha (composited on white), 16-bit and EXIF
        orientation are handled.

    Raises
    ------
    CnnscopeError
        One line naming what is wrong: no such file, not an image, too small or too large, a batch where one
        picture is expected, values outside [0, 1] or not finite, an unsupported type.
    """
    if isinstance(source, Image.Image):
        _check_size("the PIL image", *source.size)
        return pil_to_tensor(source)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return _array_image(source)
    if not isinstance(source, (str, os.PathLike)):
        raise CnnscopeError(f"an image must be a path, 'sample:NAME', a PIL image, a numpy array or a tensor, "
                            f"not {type(source).__name__}")
    text = str(source)
    if text.startswith("sample:"):
        return _load_sample(text[len("sample:"):])
    with _opened(text) as img:
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise CnnscopeError(f"{text}: truncated or corrupt image ({err})") from None
        return pil_to_tensor(ImageOps.exif_transpose(img))


def check_image_source(source: str | os.PathLike) -> None:
    """What `load_image` checks before decoding — the sample's name; the file: there, not empty, a format
    Pillow reads, a size within limits — from the header alone (milliseconds for a whole folder's worth); a
    file truncated past its header is still found only when it is loaded."""
    text = str(source)
    if text.startswith("sample:"):
        if text[len("sample:"):] not in SAMPLES:
            _load_sample(text[len("sample:"):])  # the error, with its suggestions
        return
    with _opened(text):
        pass


@contextlib.contextmanager
def _opened(text: str):
    """The image file `text`, opened lazily (header read, pixels not decoded), its size checked."""
    path = Path(text)
    if not path.exists():
        raise CnnscopeError(f"{text}: no such file")
    if path.is_dir():
        raise CnnscopeError(f"{text}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise CnnscopeError(f"{text}: file is empty (0 bytes)")
    with warnings.catch_warnings():
        # Pillow's own bomb check would otherwise only warn between 89 and 179 MP.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except PermissionError:
            raise CnnscopeError(f"{text}: permission denied") from None
        except UnidentifiedImageError:
            raise CnnscopeError(f"{text}: not an image file Pillow can read") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise CnnscopeError(
                f"{text}: image is too large (over the {MAX_PIXELS // 1_000_000} MP limit; "
                "Pillow refuses it as a possible decompression bomb)"
            ) from None
        except OSError as err:
            raise CnnscopeError(f"{text}: truncated or corrupt image ({err})") from None
        with img:
            _check_size(text, *img.size)
            yield img


def image_batch(source) -> torch.Tensor:
    """One or several pictures as [N, 3, H, W]: a tensor [N,3,H,W], or a list of anything `load_image` takes
    (all the same size), or one picture (N = 1)."""
    if torch.is_tensor(source) and source.dim() == 4:
        return torch.stack([_array_image(t) for t in source]) if len(source) else _empty_batch()
    if isinstance(source, (list, tuple)):
        if not source:
            return _empty_batch()
        images = [load_image(s) for s in source]
        sizes = {tuple(i.shape) for i in images}
        if len(sizes) > 1:
            raise CnnscopeError(f"images of different sizes in one batch: {sorted(sizes)}")
        return torch.stack(images)
    return load_image(source)[None]


def _empty_batch():
    raise CnnscopeError("no images given (an empty batch)")


def _array_image(source) -> torch.Tensor:
    """A numpy HWC/HW array or a tensor CHW/HW/1CHW as [3,H,W] float in [0,1], checked."""
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
            raise CnnscopeError(f"a numpy image must be HxW or HxWxC with C = 1, 3 or 4 (channels last), "
                                f"got shape {source.shape}")
        if source.dtype.kind not in "buif":
            raise CnnscopeError(f"a numpy image must hold numbers, not {source.dtype}")
        array = source[:, :, 0] if source.ndim == 3 and source.shape[2] == 1 else source
        if array.dtype.kind in "iu" and array.dtype not in (np.uint8, np.uint16):
            raise CnnscopeError(f"a numpy image of integers must be uint8 or uint16, not {array.dtype}")
        _check_values(array.astype(np.float64) if array.dtype.kind == "f" else None)
        _check_size("the numpy image", array.shape[1], array.shape[0])
        return array_to_tensor(array)
    t = source.detach().cpu()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise CnnscopeError(f"a batch of {t.shape[0]} images where one is expected (give one [3,H,W])")
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise CnnscopeError(f"an image tensor must be [3,H,W], [1,H,W], [H,W] or [1,3,H,W] (channels first), "
                            f"got shape {list(source.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        t = t.float()
        _check_values(t.double().numpy())
    else:
        raise CnnscopeError(f"an image tensor must be float in [0, 1] or uint8, not {t.dtype}")
    _check_size("the image tensor", t.shape[2], t.shape[1])
    return t.expand(3, -1, -1).contiguous()


def _check_values(values) -> None:
    if values is None or values.size == 0:
        return
    if not np.isfinite(values).all():
        raise CnnscopeError("the image has NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise CnnscopeError(f"image values must lie in [0, 1] (got {low:.3g} to {high:.3g}; "
                            "divide uint8 pixels by 255, undo any normalisation)")


def _check_size(name: str, width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise CnnscopeError(f"{name}: image has zero size ({width}x{height} px)")
    if width * height > MAX_PIXELS:
        raise CnnscopeError(
            f"{name}: image is {width}x{height} px ({width * height / 1e6:.0f} MP), "
            f"over the {MAX_PIXELS // 1_000_000} MP limit"
        )
    if min(width, height) < MIN_SIDE:
        raise CnnscopeError(f"{name}: image is {width}x{height} px; each side must be at least {MIN_SIDE} px")


def _load_sample(name: str) -> torch.Tensor:
    if name not in SAMPLES:
        close = difflib.get_close_matches(name, SAMPLES, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join('sample:' + c for c in close)}?" if close else ""
        raise CnnscopeError(f"unknown sample 'sample:{name}'{hint} (available: {', '.join(sample_names())})")
    array = getattr(skimage.data, SAMPLES[name])()
    return array_to_tensor(array)


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxW, HxWx3 or HxWx4 array (uint8, uint16, bool or float in [0,1]) -> [3,H,W] float tensor."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    else:
        a = a.astype(np.float32)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:  # composite on white, as a viewer would show it
        alpha = a[:, :, 3:4]
        a = a[:, :, :3] * alpha + (1.0 - alpha)
    return torch.from_numpy(np.ascontiguousarray(a[:, :, :3].transpose(2, 0, 1))).clamp_(0, 1)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """Any Pillow mode -> [3,H,W] float tensor in [0,1]."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if (mode.startswith("I;16") or a.max() > 255) else 255.0
        return array_to_tensor(np.clip(a / scale, 0, 1))
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        hi = a.max()
        return array_to_tensor(np.clip(a / (hi if hi > 1 else 1.0), 0, 1))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    img = img.convert("RGBA" if has_alpha else "RGB")
    return array_to_tensor(np.asarray(img))


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] (or [1,3,H,W]) float in [0,1] -> HxWx3 uint8 (values outside [0,1] are clipped)."""
    t = image.detach().cpu().float()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"tensor_to_uint8 takes one image, got a batch of {t.shape[0]}")
        t = t[0]
    return (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def load_thumbnail(path: str | os.PathLike, side: int = 200) -> np.ndarray:
    """A saved picture as an HxWx3 uint8 array no larger than `side` px: what a grid cell shows (2 in at 100 dpi),
    in a quarter of the memory of the float picture, so a run's figure does not grow with its pictures' size."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
        return np.asarray(img).copy()


def save_image(image: torch.Tensor | np.ndarray, path: str | os.PathLike) -> Path:
    """Save a [3,H,W] float tensor in [0,1] (or an HxWx3 uint8 array) as PNG, atomically."""
    array = image if isinstance(image, np.ndarray) else tensor_to_uint8(image)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return Path(path)
