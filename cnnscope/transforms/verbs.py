"""The transformation-analysis verbs: equivariance, stitch, cka, train-small, stitch-small (run in `commands`)."""

from ..verbs import (
    Flag,
    Float,
    Int,
    Names,
    Odd,
    Option,
    Text,
    Verb,
    force_option,
    model_options,
    out_option,
    run_options,
)

RUN = "cnnscope.transforms.commands:"
LAYERS = Names(metavar="LAYER[,LAYER…]")


def data_options() -> tuple[Option, ...]:
    return (Option("images", Text(metavar="FOLDER"), None, "images (labels.csv used if present; default bundled "
                   "crops)"),
            Option("limit", Int(low=4), None, "at most this many images"),
            Option("fit", Float(fraction=True), 0.8, "fraction of images used to fit"))


QUICK = Option("quick", Flag(), False, "few images, two layers, 2 epochs (for CI)")
TWO_MODELS = (*model_options("a", "efficientnet_lite0"), *model_options("b", "efficientnet_lite1", preprocessing=False,
                                                                      device=False))

VERBS = (
    Verb("equivariance", "is Phi(gx) = M_g Phi(x)? compensate a transform inside the network", (
        Option("transform", Text(metavar="TRANSFORM"), "vflip", "hflip, vflip, rot90, rot180, rotate:DEG, scale:F"),
        Option("layers", LAYERS, None, "conv layers, or 'stages' (their spatial maps; default: stem, stage2, stage4, "
               "stage6, head)"),
        *data_options(),
        Option("epochs", Int(low=0), 0, "epochs of the network's own loss refining the closed-form map (0: closed "
               "form only)"),
        Option("ridge", Float(low=0.0), None, "ridge: CNN layers, towards M = I (default: chosen on held-back "
               "images); hand-crafted features (default 1e-4)"),
        Option("crops", Int(0), 1, "random rescaled crops per fit image added to the regression (0: the pictures "
               "alone)"),
        Option("neighbourhood", Names(metavar="M[,M…]", what="odd sizes like 1,3,5", ints=True), "1,3",
               "the m x m cells each compensated cell may read: candidate supports of M_g, the best chosen by the "
               "task on held-back fit images (CNN layers; the spatial inverse alone is always a candidate) or each "
               "reported (hand-crafted features)"),
        QUICK, *model_options(), out_option(), *run_options(),
    ), RUN + "equivariance", "cnnscope equivariance --transform vflip --layers stage2,stage4 --out out/equivariance",
        positional=("model", "layers", "transform"), json=True,
        doc="Lenc & Vedaldi: learn M_g with Φ(gx) ≈ M_g Φ(x) and judge it by the network's own output.",
        returns="EquivarianceResult or list of EquivarianceResult\n    One per layer: ``baseline``, ``row`` (errors "
                "spatially compensated, by a permutation and by the learned map; its R²; invariant channels), "
                "``map``. With `out`: the table ``--json`` prints."),
    Verb("stitch", "equivalence by stitching: front of A, learned map E, rest of B", (
        *TWO_MODELS,
        Option("layers", LAYERS, None, "layers present in both (or a:b pairs), comma-separated (default: stem, "
               "stage1..stage6)"),
        *data_options(),
        Option("epochs", Int(low=0), 8, "task-loss epochs (0: the closed-form regression stitch only)"),
        Option("no_resample", Flag(), False, "refuse grids that differ instead of resampling"),
        Option("kernel", Odd(), 1, "the regression and task stitches' m x m support (odd)"),
        Option("batchnorm", Flag(), False, "task-loss stitch: batch norm before the map"),
        QUICK, out_option(), *run_options(),
    ), RUN + "stitch", "cnnscope stitch --a efficientnet_lite0 --b efficientnet_lite1 --layers stage2 --out out/stitch",
        positional=("a", "b", "layers"), json=True,
        doc="Lenc & Vedaldi: Φ_B ≈ E Φ_A, E learned; the error of A's front + E + B's rest per layer.",
        returns="StitchResult or list of StitchResult\n    One per layer pair: ``baseline`` A's and B's own "
                "errors; ``row`` per stitch (naive, random, permutation, regression, task); ``stitches``."),
    Verb("cka", "linear CKA between the layers of two models (heatmap)", (
        *TWO_MODELS,
        Option("layers", LAYERS, "stages", "layers of A and B ('stages' = stem..logits)"),
        Option("images", Text(metavar="FOLDER"), None, "images (default: the bundled samples' crops)"),
        Option("limit", Int(low=4), 50, "at most this many images"),
        Option("debiased", Flag(), False, "debiased CKA (default biased)"),
        out_option(), *run_options(jobs=False),
    ), RUN + "cka", "cnnscope cka --a efficientnet_lite0 --b efficientnet_lite1 --limit 20 --out out/cka",
        positional=("a", "b", "layers"), json=True, doc="Kornblith et al. 2019.",
        returns="CkaResult\n    ``cka[i][j]`` between A's i-th and B's j-th layer on ``count`` images."),
    Verb("train-small", "train a small CNN from scratch on a procedural dataset (seconds)", (
        Option("data", Text(("shapes", "textures")), "shapes", "the procedural dataset"),
        Option("seed", Int(low=0), 0, "random seed: initialisation and batch order"),
        Option("epochs", Int(), 8, "training epochs"),
        Option("out", Text(metavar="FILE"), None, "the checkpoint (default cnnscope-out/small_DATA_seedS"
               ".safetensors)", group="output"),
        force_option(),
    ), RUN + "train_small", "cnnscope train-small --data shapes --seed 1 --out out/shapes1.safetensors",
        positional=("data",), returns="dict\n    ``test_accuracy`` and the training record; ``file`` the checkpoint."),
    Verb("stitch-small", "seeds / before-after training / different data, by stitching", (
        Option("out", Text(metavar="DIR"), "cnnscope-out", "output folder", group="output"),
        Option("epochs", Int(), 8, "training epochs per network"),
        Option("quick", Flag(), False, "fewer images and epochs (for CI)"),
    ), RUN + "stitch_small", "cnnscope stitch-small --quick --out out/small",
        returns="dict\n    Per case (seeds, before/after training, data) the stitching table."),
)
