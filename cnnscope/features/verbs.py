"""The hand-crafted feature verbs: hog (run in `commands`)."""

from ..verbs import IMAGE_HELP, Flag, Int, Option, Picture, Verb, memory_option, out_option

VERBS = (
    Verb("hog", "HOG of an image drawn as glyphs (oriented strokes per cell)", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True),
        Option("cell_size", Int(low=2), 8, "pixels per cell"),
        Option("orientations", Int(low=2), 9, "undirected orientations"),
        Option("bilinear", Flag(), False, "bilinear orientation binning (HOGb)"),
        Option("size", Int(low=8), None, "resize the shorter side to this many px first"),
        Option("glyph", Int(), 15, "glyph size in px"),
        out_option(), memory_option(),
    ), "cnnscope.features.commands:hog", "cnnscope hog sample:chelsea --cell-size 8 --out out/hog",
        positional=("image",), doc="Dalal & Triggs, VLFeat's variant (31 numbers per cell).",
        returns="HogResult\n    ``features_shape`` [31, H/cell, W/cell]; ``image_shape``; ``images`` the glyph "
                "picture."),
)
