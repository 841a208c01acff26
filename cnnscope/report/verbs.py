"""The verbs that compose the families: report (a site of a whole model), reproduce (the seed talk's findings)
and demo (run in `commands`)."""

from ..verbs import Flag, Int, Names, Option, Text, Verb, model_options, run_options

RUN = "cnnscope.report.commands:"
FINDING_NAMES = ("prior", "inversion-depth", "deconvnet-selectivity", "deconvnet-image-information", "vflip", "hflip",
                 "rot90", "invariance", "hog-rotation", "stitching", "seeds", "data")  # = report.findings.FINDINGS

VERBS = (
    Verb("report", "a browsable static HTML site of a whole model (resumable, parallel)", (
        *model_options(positional=True),
        Option("out", Text(metavar="DIR"), "cnnscope-report", "output folder", group="output"),
        *run_options(),
        Option("images", Text(metavar="FOLDER"), None, "images for patches and examples (default bundled samples)"),
        Option("layers", Names(metavar="LAYER[,LAYER…]"), None, "layers, comma-separated, or 'stages' (default)"),
        Option("channels", Int(), None, "first K channels per layer in the atlas (default all)"),
        Option("iters", Int(), None, "pre-image iterations (default: 200 for the inversions, the recipe's for the "
               "atlas)"),
        Option("size", Int(low=8), None, "pre-image size in px (default the model's input size)"),
        Option("examples", Int(), None, "images inverted / back-propagated (default 4)"),
        Option("patch_images", Int(), None, "images searched for top patches (default 100)"),
        Option("equivariance", Text(metavar="TRANSFORM"), None, "also run the equivariance analysis (e.g. vflip)"),
        Option("stitch_with", Text(metavar="MODEL"), None, "also stitch this model's layers into MODEL_B's"),
        Option("atlas_batch", Int(), 1, "atlas channels optimised together per job (on a GPU 16-64 use it fully)",
               metavar="N"),
        Option("quick", Flag(), False, "two layers, 4 channels, 40 iterations, 96 px"),
    ), RUN + "report", "cnnscope report efficientnet_lite0 --quick --out out/report", positional=("model", "out"),
        doc="Per layer: inversions, an activation-maximisation atlas, top dataset patches, backprop strips. With "
            "several workers the model must be loadable by name (a zoo name or file.py:factory).",
        returns="ReportResult\n    ``index`` the site's front page, ``layers`` covered, jobs ``computed`` and "
                "``reused``."),
    Verb("reproduce", "the seed talk's findings, each measured with a verdict (findings.json)", (
        *model_options(),
        Option("out", Text(metavar="DIR"), "cnnscope-findings", "output folder", group="output"),
        *run_options(),
        Option("images", Text(metavar="FOLDER"), None, "images (default: the bundled samples)"),
        Option("findings", Names(metavar="ID,…"), None, f"only these ({', '.join(FINDING_NAMES)}; default all but "
               "hflip and rot90)"),
        Option("transforms", Names(metavar="T,…"), None, "equivariance findings to run (vflip, hflip, rot90; "
               "default vflip)"),
        Option("quick", Flag(), False, "few images and iterations (for CI, about 3 minutes)"),
    ), RUN + "reproduce", "cnnscope reproduce --images ../imagenet-sample --workers 2 --out out/findings",
        positional=("model", "out"), json=True,
        returns="FindingsResult\n    ``findings``: per finding its ``id``, ``claim``, ``verdict`` and numbers "
                "(as findings.json); ``folder``."),
    Verb("demo", "write the demo HTML page + figures into a folder", (
        Option("out", Text(metavar="DIR"), "demo-out", "output folder", group="output"),
        Option("model", Text(metavar="MODEL"), None, "zoo model (default efficientnet_lite0)"),
        Option("images", Names(metavar="IMAGE"), None, "images (default sample:chelsea sample:coffee)", nargs="+"),
        Option("quick", Flag(), False, "small optimisation budget (for CI and a first look)"),
        *model_options(preprocessing=False)[3:4],
    ), RUN + "demo", "cnnscope demo --quick --out out/demo", api=""),
)
