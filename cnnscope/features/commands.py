"""The hand-crafted feature verbs, run (declared in `verbs`)."""

from __future__ import annotations

from ..jobs import execute
from ..progress import table
from ..requests import answer, first, out_dir, picture
from ..verbs import Answer, Request
from .plans import plan_hog


def hog(req: Request) -> Answer:
    out = out_dir(req)
    source, _ = picture(req.image)
    job = plan_hog(source, cell_size=req.cell_size, orientations=req.orientations, bilinear=req.bilinear,
                   size=req.size, glyph=req.glyph)
    run = execute([job], out)
    if (r := first(run)) is not None:
        h, w = r["image_shape"]
        table(f"HOG {tuple(r['features_shape'])} of a {w}x{h} image"
              + (f"; wrote {out / job.key}.png" if out is not None else ""))
    return answer(run, r)
