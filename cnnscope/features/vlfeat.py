"""VLFeat's own HOG through ctypes: the reference our differentiable HOG is checked against.

Needs the shared library of Debian's `libvlfeat1` (`apt-get install libvlfeat1`); `available()` says whether it
was found. Nothing else in cnnscope depends on it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
from functools import cache

import numpy as np

_HOG_UOCTTI = 1  # VlHogVariantUoctti


@cache
def library() -> ctypes.CDLL | None:
    candidates = [ctypes.util.find_library("vl")] + sorted(glob.glob("/usr/lib/*/libvl.so*"))
    for path in filter(None, candidates):
        try:
            lib = ctypes.CDLL(path)
            lib.vl_hog_new  # noqa: B018 - the symbol we need must be there
        except (OSError, AttributeError):
            continue
        size, ptr, f32p = ctypes.c_uint64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)
        lib.vl_hog_new.restype = ptr
        lib.vl_hog_new.argtypes = [ctypes.c_int, size, ctypes.c_int]
        lib.vl_hog_delete.argtypes = [ptr]
        lib.vl_hog_set_use_bilinear_orientation_assignments.argtypes = [ptr, ctypes.c_int]
        lib.vl_hog_put_image.argtypes = [ptr, f32p, size, size, size, size]
        lib.vl_hog_extract.argtypes = [ptr, f32p]
        for name in ("vl_hog_get_width", "vl_hog_get_height", "vl_hog_get_dimension"):
            getattr(lib, name).restype = size
            getattr(lib, name).argtypes = [ptr]
        return lib
    return None


def available() -> bool:
    return library() is not None


def vl_hog(image: np.ndarray, cell_size: int = 8, orientations: int = 9, bilinear: bool = False) -> np.ndarray:
    """UoCTTI HOG of a [C, H, W] float image by libvlfeat: [3·O + 4, cells_h, cells_w] float32."""
    lib = library()
    if lib is None:
        raise RuntimeError("libvlfeat not found (apt-get install libvlfeat1)")
    img = np.ascontiguousarray(image, dtype=np.float32)  # VLFeat's layout: x fastest, then y, then channel
    c, h, w = img.shape
    hog = lib.vl_hog_new(_HOG_UOCTTI, orientations, 0)
    try:
        lib.vl_hog_set_use_bilinear_orientation_assignments(hog, int(bilinear))
        f32p = ctypes.POINTER(ctypes.c_float)
        lib.vl_hog_put_image(hog, img.ctypes.data_as(f32p), w, h, c, cell_size)
        dims = (lib.vl_hog_get_dimension(hog), lib.vl_hog_get_height(hog), lib.vl_hog_get_width(hog))
        out = np.zeros(dims, dtype=np.float32)
        lib.vl_hog_extract(hog, out.ctypes.data_as(f32p))
    finally:
        lib.vl_hog_delete(hog)
    return out
