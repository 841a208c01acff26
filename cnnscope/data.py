"""Data in: the bundled photographs, image folders with their labels, seeded random crops and seeded shuffled
fit/test splits. Every verb that needs a set of images gets it here, the same way.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
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


CHUNK = 16  # pictures per read or write


class ImageSet:
    """[N,3,S,S] pictures in [0,1] kept in a temporary file, not in memory: indexing (an int, a slice, an index
    tensor) reads just those back as a float32 tensor, and `subset` makes a view of some of them without reading
    any. The transformation analyses pass over thousands of pictures many times, a chunk at a time; holding the
    set here keeps their memory flat in the number of pictures (each read comes from the page cache). Exact:
    pictures come back bit for bit as written.

    Build one with `ImageSet.write` (from chunks) or `image_store`.
    """

    def __init__(self, file, picture: tuple[int, ...], rows: torch.Tensor):
        self._file, self._picture, self._rows = file, tuple(picture), rows
        self._nbytes = 4 * math.prod(picture)

    @classmethod
    def write(cls, chunks: Iterable[torch.Tensor]) -> ImageSet:
        """A set of the pictures of `chunks` ([n,3,S,S] each, in order)."""
        file, picture, n = tempfile.TemporaryFile(prefix="cnnscope-images-"), None, 0
        for chunk in chunks:
            chunk = chunk.detach().to("cpu", torch.float32).contiguous()
            if picture is not None and tuple(chunk.shape[1:]) != picture:
                raise CnnscopeError(f"pictures of one set must share a size: {tuple(chunk.shape[1:])} vs {picture}")
            picture = tuple(chunk.shape[1:])
            file.write(chunk.numpy().tobytes())
            n += len(chunk)
        if picture is None:
            raise CnnscopeError("no pictures to keep")
        file.flush()
        return cls(file, picture, torch.arange(n))

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._picture)

    def dim(self) -> int:
        return 1 + len(self._picture)

    def subset(self, index) -> ImageSet:
        """The pictures at `index` (a slice or an index tensor), as a set: nothing is read."""
        return ImageSet(self._file, self._picture, self._rows[index])

    def __getitem__(self, index) -> torch.Tensor:
        rows = self._rows[index]
        one = rows.dim() == 0
        rows = rows.reshape(-1).tolist()
        out = torch.empty(len(rows), *self._picture)
        flat = out.view(len(rows), -1).numpy()
        for i, row in enumerate(rows):
            flat[i] = np.frombuffer(os.pread(self._file.fileno(), self._nbytes, row * self._nbytes), np.float32)
        return out[0] if one else out

    def chunks(self, size: int = CHUNK) -> Iterator[torch.Tensor]:
        for i in range(0, len(self), size):
            yield self[i:i + size]


def subset(images, index):
    """images[index] for a tensor; the view (nothing read) for an `ImageSet`."""
    return images.subset(index) if isinstance(images, ImageSet) else images[index]


def with_crops(images, n: int, size: int, gen: torch.Generator):
    """The pictures followed by n `random_crops` of them (drawn in order with `gen`), of the same kind: an
    `ImageSet`'s crops are made and written a chunk at a time."""
    if not n or not len(images):
        return images
    crops = (random_crops(images, min(CHUNK, n - i), size, gen) for i in range(0, n, CHUNK))
    if isinstance(images, ImageSet):
        return ImageSet.write(itertools.chain(images.chunks(), crops))
    return torch.cat([images, *crops])


def image_store(model, folder: str | None, limit: int | None, seed: int = 0,
                crops_per_sample: int = 8) -> tuple[ImageSet, torch.Tensor | None]:
    """`image_set`'s pictures in an `ImageSet` (a temporary file): decoded and prepared one at a time and never all
    held in memory, so any number of them can be analysed."""
    geometry, size = model.preprocess.geometry, model.input_size
    if folder is not None:
        items = list_folder(folder, limit)
        labels = [lab for _, lab in items]
        has = all(isinstance(lab, int) for lab in labels)
        classes = len(getattr(model, "classes", ()) or ())
        if has and classes and max(labels) >= classes:
            raise CnnscopeError(f"{folder}: labels.csv has class index {max(labels)}, but the model has {classes} "
                                f"classes (0-{classes - 1})")
        return ImageSet.write(geometry(load_image(p)) for p, _ in items), torch.tensor(labels) if has else None
    gen = torch.Generator().manual_seed(seed)
    pool = load_images(None)
    n = limit or len(pool) * crops_per_sample
    return ImageSet.write(random_crops(pool, min(CHUNK, n - i), size, gen) for i in range(0, n, CHUNK)), None


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
        [N,3,S,S] in [0,1] (`image_store` keeps them in a file instead).
    labels : Tensor or None
        [N] integer class labels when every image has one.
    """
    size = model.input_size
    if folder is not None:  # held as one tensor: refused before decoding when over the budget
        n = len(list_folder(folder, limit))
        check_bytes(2 * n * 3 * size * size * 4, f"{n} images of {folder} at {size} px", "fewer with --limit N")
    images, labels = image_store(model, folder, limit, seed, crops_per_sample)
    return images[:], labels


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
