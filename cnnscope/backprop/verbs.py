"""The backpropagation verbs: saliency, backprop (the reversed network), selectivity, sanity (run in `commands`)."""

from ..verbs import (
    IMAGE_HELP,
    Flag,
    Int,
    Names,
    Option,
    Picture,
    Pictures,
    Text,
    Verb,
    model_options,
    out_option,
    run_options,
)

RUN = "cnnscope.backprop.commands:"
METHOD_NAMES = ("salinet", "deconvnet", "desalinet")  # checked against `backprop.methods.METHODS` by the tests
POOL_RULE_NAMES = ("switches", "centre", "uniform", "passthrough")  # likewise `backprop.rules.POOL_RULES`
CLASS = Names(metavar="NAME|INDEX", what="a class index or name", ints=True)

VERBS = (
    Verb("saliency", "SaliNet / DeConvNet / DeSaliNet maps (the seed's comparison figure)", (
        Option("images", Pictures(), None, "image file(s), sample:NAME or a folder (one job per picture)", flag="",
               nargs="+", required=True),
        *model_options(), out_option(), *run_options(),
        Option("method", Names(metavar="METHOD"), "all", "salinet, deconvnet, desalinet (several comma-separated), "
               "or all"),
        Option("layer", Text(metavar="NAME"), None, "start layer (default: the seed's two rows, last conv stage + "
               "top class)"),
        Option("channel", Int(low=0), None, "a neuron of this channel (at --y, --x; default centre)",
               exclusive="target"),
        Option("classes", CLASS, None, "a class logit", flag="--class", exclusive="target"),
        Option("features", Flag(), False, "the layer's whole activation (full code)", exclusive="target"),
        Option("whole_channel", Flag(), False, "with --channel: every position of it"),
        Option("y", Int(low=0), None, "the neuron's row (feature cells)"),
        Option("x", Int(low=0), None, "the neuron's column (feature cells)"),
        Option("pool_rule", Text(POOL_RULE_NAMES), None, "max-pool backward rule (default: the method's, switches)"),
        Option("render", Text(("signed", "abs", "max")), "signed", "how maps are shown"),
    ), RUN + "saliency", "cnnscope saliency sample:chelsea --method all --out out/saliency",
        positional=("model", "images"),
        doc="Backprop induces a reversed network; the rectifier's and max-pool's backward rules make SaliNet "
            "(the gradient), DeConvNet (Zeiler & Fergus) and DeSaliNet (M&V ECCV'16, ≈ guided backprop).",
        returns="SaliencyResult or list of SaliencyResult\n    One per picture: ``maps[(target, method)]`` raw "
                "signed [3,H,W] maps; ``rows`` the targets; ``images`` the picture and the rendered maps."),
    Verb("backprop", "print the reversed network and each block's backward rule", (
        *model_options(positional=True), *run_options(jobs=False),
        Option("method", Text(METHOD_NAMES), "deconvnet", "the backprop network"),
        Option("pool_rule", Text(POOL_RULE_NAMES), None, "max-pool backward rule (default: the method's)"),
    ), RUN + "backprop", "cnnscope backprop efficientnet_lite0 --method desalinet", api="reversed_network",
        positional=("model", "method"),
        returns="list of dict\n    Per block in backward order: ``layer``, ``alias``, ``type``, ``backward`` rule."),
    Verb("selectivity", "are backprop maps neuron-selective? (ECCV'16 protocol)", (
        *model_options(), out_option(), *run_options(jobs=False),
        Option("images", Text(metavar="FOLDER"), None, "image folder (default: bundled samples)"),
        Option("limit", Int(), 20, "at most this many images"),
        Option("layer", Text(metavar="NAME"), None, "layer (default: the last convolutional stage)"),
        Option("neurons", Int(low=2), 4, "random neurons per image (two at least: they are also compared with each "
               "other)"),
    ), RUN + "selectivity", "cnnscope selectivity --layer stage6 --limit 6 --out out/selectivity",
        positional=("model", "layer"), json=True,
        returns="SelectivityResult\n    ``correlations[method]``: mean correlation of maps from the max neuron vs "
                "random neurons, vs a random direction, and between random neurons (high = not neuron-selective)."),
    Verb("sanity", "cascading model-parameter randomisation (Adebayo et al. 2018)", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True),
        *model_options(), out_option(), *run_options(jobs=False),
        Option("classes", CLASS, None, "class (default: the top prediction)", flag="--class"),
    ), RUN + "sanity", "cnnscope sanity sample:chelsea --out out/sanity", positional=("model", "image"), json=True,
        returns="SanityResult\n    ``blocks`` re-initialised from the top; ``spearman[method]`` each step's rank "
                "correlation with the trained network's map."),
)
