"""Data in: the bundled photographs, image folders with their labels, seeded random crops and seeded shuffled
fit/test splits. Every verb that needs a set of images gets it here, the same way.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import CnnscopeError
from .images import check_image_source, load_image
from .memory import check_bytes

# The bundled photographs (scikit-image samples; all of `images.SAMPLES` but the textures and drawings), in
# the order every default image set takes them.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "retina", "ihc", "hubble", "camera", "coins", "brick")


def photo_sources(limit: int | None = None) -> list[str]:
    """``sample:NAME`` for the first `limit` bundled photographs (all when None)."""
    return [f"sample:{n}" for n in PHOTOS[:limit]]


def image_sources(folder: str | os.PathLike | None, limit: int | None = None) -> list[str]:
    """Image paths of `folder` (sorted; see `list_folder`), or the bundled photographs when folder is None."""
    if folder is None:
        return photo_sources(limit)
    return [str(p) for p, _ in list_folder(folder, limit)]


def picture_sources(items: Sequence[str]) -> list[str]:
    """Pictures named on a command line — files, ``sample:NAME``, folders (their images, as `image_sources`
    lists them) — each file's header checked (`check_image_source`) before any work."""
    sources = [s for item in items for s in (image_sources(item) if Path(item).is_dir() else [item])]
    if not sources:
        raise CnnscopeError(f"no images in {', '.join(items)}")
    for source in sources:
        check_image_source(source)
    return sources


def load_images(folder: str | os.PathLike | None, limit: int | None = None) -> list[torch.Tensor]:
    """The images of `image_sources`, loaded ([3,H,W] in [0,1], sizes as found)."""
    return [load_image(s) for s in image_sources(folder, limit)]


class Pictures(Sequence):
    """Pictures loaded one at a time as they are used (a sized, re-iterable view of their sources): a pass
    over a folder holds one decoded picture, not all of them."""

    def __init__(self, sources: Sequence[str]):
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Pictures(self.sources[index])
        return load_image(self.sources[index])


def stream_images(folder: str | os.PathLike | None, limit: int | None = None) -> Pictures:
    """The images of `image_sources`, each loaded when it is used (`Pictures`)."""
    return Pictures(image_sources(folder, limit))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def list_folder(folder: str | os.PathLike, limit: int | None = None) -> list[tuple[Path, int | str | None]]:
    """Images of a folder with their labels: a labels.csv (file, class_index…) if present, else class
    sub-folders (label = folder name), else a flat folder (no labels). Sorted, so runs are reproducible."""
    root = Path(folder)
    if not root.is_dir():
        raise CnnscopeError(f"{folder}: not a folder")
    labels = root / "labels.csv"
    if labels.is_file():
        with open(labels, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        if "file" not in (reader.fieldnames or []):
            raise CnnscopeError(f"{labels}: expected a header with columns file,class_index (found "
                                f"{','.join(reader.fieldnames or []) or 'none'})")
        bad = [r.get("class_index") for r in rows if (r.get("class_index") or "").strip() and
               not (r.get("class_index") or "").strip().isdigit()]
        if bad:
            raise CnnscopeError(f"{labels}: class_index must be a whole number >= 0, got '{bad[0]}'")
        items = [(root / r["file"], int(r["class_index"]) if (r.get("class_index") or "").strip() else None)
                 for r in rows if r.get("file")]
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        items = [(p, p.parent.name if p.parent != root else None) for p in files]
    if not items:
        raise CnnscopeError(f"{folder}: no images found")
    return items[:limit] if limit else items


def random_crops(images: Sequence[torch.Tensor], n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """n random square crops (random scale, then resized to `size`), drawn with `gen`: [n,3,size,size]."""
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        h, w = img.shape[-2:]
        side = int(min(h, w) * (0.5 + 0.5 * float(torch.rand(1, generator=gen))))
        top = int(torch.randint(h - side + 1, (1,), generator=gen))
        left = int(torch.randint(w - side + 1, (1,), generator=gen))
        crop = img[:, top:top + side, left:left + side].unsqueeze(0)
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out)


def image_set(model, folder: str | None, limit: int | None, seed: int = 0,
              crops_per_sample: int = 8) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A set of square images at a model's input size, for the analyses that fit on data.

    Parameters
    ----------
    model : Model
        Gives the input size S and the resize + centre crop (``model.preprocess.geometry``).
    folder : str or None
        An image folder (labels from labels.csv or class sub-folders), or None for random crops of the
        bundled photographs (unlabelled, so the analyses run anywhere).
    limit : int or None
        At most this many images (None: all, or ``crops_per_sample`` crops per photograph).
    seed : int
        Seeds the crops.

    Returns
    -------
    images : Tensor
        [N,3,S,S] in [0,1].
    labels : Tensor or None
        [N] integer class labels when every image has one.
    """
    geometry, size = model.preprocess.geometry, model.input_size
    if folder is not None:
        items = list_folder(folder, limit)
        labels = [lab for _, lab in items]
        has = all(isinstance(lab, int) for lab in labels)
        classes = len(getattr(model, "classes", ()) or ())
        if has and classes and max(labels) >= classes:
            raise CnnscopeError(f"{folder}: labels.csv has class index {max(labels)}, but the model has {classes} "
                                f"classes (0-{classes - 1})")
        # held as one tensor (the analyses fit and test on it): refused before decoding when over the budget
        check_bytes(2 * len(items) * 3 * size * size * 4, f"{len(items)} images of {folder} at {size} px",
                    "fewer with --limit N")
        images = torch.cat([geometry(load_image(p)) for p, _ in items])
        return images, torch.tensor(labels) if has else None
    gen = torch.Generator().manual_seed(seed)
    pool = load_images(None)
    return random_crops(pool, limit or len(pool) * crops_per_sample, size, gen), None


def split(n: int, fit: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded shuffled fit/test split of n items (a class-sorted folder still gives unbiased halves).

    Parameters
    ----------
    n : int
        Number of items (at least 2).
    fit : float
        Fraction in (0, 1) that goes to fitting; each side keeps at least one item.
    seed : int
        Seeds the shuffle.

    Returns
    -------
    fit_index, test_index : Tensor
        Disjoint index tensors covering range(n).
    """
    if not 0 < fit < 1:
        raise CnnscopeError(f"the fit fraction must be between 0 and 1, got {fit}")
    if n < 2:
        raise CnnscopeError(f"need at least 2 images to split into fit and test, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_fit = max(1, min(n - 1, round(n * fit)))
    return order[:n_fit], order[n_fit:]
