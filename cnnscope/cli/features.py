"""Hand-crafted feature verbs: hog."""

from __future__ import annotations

from ..features.plans import plan_hog
from ..images import load_image
from ..jobs import execute
from .numbers import at_least_two, positive_int
from .options import finish, memory_option, out_dir, output_options


def register(sub) -> None:
    p = sub.add_parser("hog", help="HOG of an image drawn as glyphs (oriented strokes per cell)")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--cell-size", type=at_least_two, default=8, help="pixels per cell (default 8)")
    p.add_argument("--orientations", type=at_least_two, default=9, help="undirected orientations (default 9)")
    p.add_argument("--bilinear", action="store_true", help="bilinear orientation binning (HOGb)")
    p.add_argument("--size", type=positive_int, help="resize the shorter side to this many px first")
    p.add_argument("--glyph", type=positive_int, default=15, help="glyph size in px (default 15)")
    output_options(p)
    memory_option(p)
    p.set_defaults(func=cmd_hog)


def cmd_hog(args) -> None:
    out = out_dir(args.out)
    load_image(args.image)
    job = plan_hog(args.image, cell_size=args.cell_size, orientations=args.orientations, bilinear=args.bilinear,
                   size=args.size, glyph=args.glyph)
    run = execute([job], out)
    finish(run)
    r = run.outcomes[0].results
    h, w = r["image_shape"]
    print(f"HOG {tuple(r['features_shape'])} of a {w}x{h} image; wrote {out / job.key}.png")
