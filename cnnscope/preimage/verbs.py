"""The pre-image verbs: invert, maximize, accentuate, caricature, texture, style-transfer, and the feed-forward
texture networks (train-texture-net, apply-texture-net). Run in `commands`."""

from ..verbs import (
    DATA_WEIGHT,
    IMAGE_HELP,
    Channels,
    Flag,
    Float,
    Int,
    Names,
    Option,
    Picture,
    Text,
    Verb,
    force_option,
    model_options,
    optimiser_options,
    out_option,
    run_options,
)

RUN = "cnnscope.preimage.commands:"
LAYERS = Names(metavar="LAYER[,LAYER…]")
CLASSES = Names(metavar="NAME|INDEX", what="a class index or name, or a list of them", ints=True)
SOFTEN = Option("soften", Float(low=0.0, strict=True), None, "softmax activations (temperature T) before the Gram",
                metavar="T")


def preimage_options(data_weight: float, recipes: bool = True, jobs: bool = True) -> tuple[Option, ...]:
    return (*model_options(several=recipes), out_option(), *run_options(jobs=jobs),
            *optimiser_options(data_weight, recipes))


def unit_options(where: str) -> tuple[Option, ...]:
    """The units to push up: channels of a layer or classes (one of them must be given)."""
    return (Option("channels", Channels(), None, "channel(s): 3, 0-15 or 1,5,9", flag="--channel", exclusive="unit"),
            Option("classes", CLASSES, None, "class logit(s): a name or an index (several comma-separated)",
                   flag="--class", exclusive="unit"),
            Option("where", Text(("neuron", "channel")), where,
                   "a single neuron (the centre) or the whole channel's mean"))


RESULTS = ("{name} or list of {name}\n    One per job (one result for one job); ``images`` the pictures (PIL), "
           "``save(folder)`` writes what the CLI writes. With `out`: the summary ``--json`` prints.")

VERBS = (
    Verb("invert", "pre-image: reconstruct an image from its code at a layer", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True),
        Option("layer", LAYERS, None, "layer(s), comma-separated, or 'stages' for stem..logits (hand-crafted "
               "models: their one layer)"),
        Option("restarts", Int(), 1, "N pre-images of the same code from different noise (reconstruction "
               "ambiguity)"),
        Option("compare_priors", Flag(), False, "no prior vs TV beta=1 vs TV beta=2"),
        Option("window", Text(metavar="y0:y1,x0:x1"), None, "reconstruct only these feature cells"),
        Option("joint", Flag(), False, "several layers: one picture whose code matches at all of them (default: one "
               "per layer)"),
        *preimage_options(DATA_WEIGHT),
    ), RUN + "invert", "cnnscope invert sample:chelsea --layer stage4 --out out/invert",
        positional=("model", "image", "layer"), json=True,
        doc="min_x C·||Φ(x) − Φ0||² / ||Φ0||² + prior(x), from noise (Mahendran & Vedaldi, CVPR'15 / IJCV'16).",
        returns=RESULTS.format(name="InvertResult") + " ``normalised_error`` per picture; ``naturalness``; "
                "``judge_top5_overlap``."),
    Verb("maximize", "activation maximisation: images that excite a unit or class", (
        Option("layer", LAYERS, None, "layer(s), comma-separated, or 'stages' (default: the logits with --class)"),
        *unit_options("neuron"),
        Option("all_channels", Flag(), False, "every channel of the layer (grid)", exclusive="unit"),
        Option("y", Int(low=0), None, "neuron row (feature cells; default centre)"),
        Option("x", Int(low=0), None, "neuron column (feature cells; default centre)"),
        Option("chunk", Int(), 8, "targets optimised together"),
        Option("batch", Int(), 1, "pictures per target"),
        Option("diversity", Float(low=0.0), 0.0, "push a target's batch pictures apart (Gram diversity, weight W "
               "relative to the data term; try 0.5)", metavar="W"),
        Option("diversity_layer", Text(metavar="NAME"), None,
               "layer the diversity is measured at (default: the maximised one, or a mid-depth one)"),
        *preimage_options(DATA_WEIGHT),
    ), RUN + "maximize", "cnnscope maximize --layer stage6 --channel 0-7 --out out/maximize",
        positional=("model", "layer", "channels"), json=True, exclusive_required=("unit",),
        doc="min_x −C·⟨e_k, Φ(x)⟩ / Z + prior(x), Z the unit's largest response on natural images; judged by "
            "other networks.",
        returns=RESULTS.format(name="ActivationResult") + " Per picture ``start_activation``, "
                "``final_activation``, ``activation_ratio``, ``judge_rank`` (classes)."),
    Verb("accentuate", "feature accentuation: push a unit up from an image, staying close to it", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True),
        Option("layer", LAYERS, None, "layer of the unit (default: the logits with --class)"),
        *unit_options("channel"),
        Option("anchor_layer", Text(metavar="NAME"), None, "stay close to the image's code here (default: two rows "
               "below --layer)"),
        Option("anchor_weight", Float(low=0.0), 1.0, "weight of staying close, relative to the data term"),
        *preimage_options(DATA_WEIGHT, jobs=False),
    ), RUN + "accentuate", "cnnscope accentuate sample:coffee --class 'tiger cat' --out out/accentuate",
        positional=("model", "image", "layer", "channels"), json=True, exclusive_required=("unit",),
        doc="Hamblin et al. 2024: started at the image, −⟨e_k, Φ(x)⟩/Z + w·||Φ_A(x) − Φ_A(x0)||² / ||Φ_A(x0)||².",
        returns=RESULTS.format(name="ActivationResult") + " One picture per unit."),
    Verb("caricature", "emphasise what a layer sees in an image", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True),
        Option("layer", LAYERS, None, "layer(s), comma-separated, or 'stages' (hand-crafted models: their one "
               "layer)"),
        Option("cosine", Float(low=0.0), 0.0, "weight the inner product by cos^P (rewards the pattern, not the "
               "magnitude)", metavar="P"),
        *preimage_options(DATA_WEIGHT),
    ), RUN + "caricature", "cnnscope caricature sample:astronaut --layer stage5 --out out/caricature",
        positional=("model", "image", "layer"), json=True,
        doc="Started at the image: −C·⟨Φ(x0), Φ(x)⟩ / ||Φ(x0)||² + prior(x) (M&V IJCV'16).",
        returns=RESULTS.format(name="CaricatureResult") + " ``relative_response`` (1 at the input)."),
    Verb("texture", "texture synthesis: match the Gram statistics of an image, from noise", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True, metavar="STYLE_IMAGE"),
        Option("style_layers", LAYERS, None, "comma-separated layers (default: the first activation map at each "
               "resolution)"),
        Option("style_size", Int(), None, "shorter side of the source in px (default: input size)"),
        Option("scales", Int(), 1, "coarse-to-fine scales"),
        SOFTEN,
        Option("compare_soften", Flag(), False, "plain Gram vs softened Gram, side by side"),
        Option("param", Text(("pixel", "colour", "fourier", "maco")), "fourier",
               "image parametrisation (fourier: its textures are half as far from the source's statistics for a "
               "judge network as pixel ones; see benchmarks/feature_vis.py)"),
        *preimage_options(1.0, recipes=False),
    ), RUN + "texture", "cnnscope texture sample:rocket --iters 300 --out out/texture",
        positional=("model", "image"),
        doc="Gatys et al. 2015: min_x Σ_l ||G_l(x) − G_l(x0)||², any output size.",
        returns=RESULTS.format(name="StyleResult") + " ``gram_before`` / ``gram_after`` per layer."),
    Verb("style-transfer", "style transfer: the content of one image, the Gram statistics of another", (
        Option("content", Picture(), None, "content image file or sample:NAME", flag="", required=True,
               metavar="CONTENT"),
        Option("style", Picture(), None, "style image file or sample:NAME", flag="", required=True, metavar="STYLE"),
        Option("style_weight", Float(low=0.0), 10.0, "weight of the Gram terms"),
        Option("content_layer", Text(metavar="NAME"), None, "(default: the model's content layer)"),
        Option("style_layers", LAYERS, None, "comma-separated (default: the model's style layers)"),
        Option("init", Text(("content", "noise")), "content", "start from the content image or from noise"),
        SOFTEN,
        *preimage_options(1.0, recipes=False, jobs=False),
    ), RUN + "style_transfer", "cnnscope style-transfer sample:astronaut sample:coffee --out out/style",
        positional=("model", "content", "style"), formerly=("style",),
        doc="Gatys et al. 2016: the content image's code at one layer, the style image's Gram matrices at others.",
        returns=RESULTS.format(name="StyleResult")),
    Verb("train-texture-net", "train a feed-forward texture (or style) network (Ulyanov / Johnson 2016)", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True, metavar="STYLE_IMAGE"),
        Option("mode", Text(("texture", "style")), "texture", "a texture generator or a style network"),
        Option("out", Text(metavar="FILE"), "cnnscope-out/texture-net.safetensors", "the network's checkpoint",
               group="output"),
        *model_options(), *run_options(jobs=False),
        Option("size", Int(low=8), 128, "training size in px (a multiple of 8)"),
        Option("iters", Int(), 1500, "training iterations"),
        Option("batch", Int(), 4, "pictures per iteration"),
        Option("lr", Float(low=0.0, strict=True), 1e-3, "Adam's learning rate"),
        Option("style_weight", Float(low=0.0), 1.0, "weight of the Gram terms"),
        Option("content_weight", Float(low=0.0), 1.0, "weight of the content term (style mode)"),
        SOFTEN,
        Option("content", Text(metavar="FOLDER"), None, "(style mode) content images; default bundled samples"),
        Option("resume", Flag(), False, "continue from --out if it exists"),
        force_option("--out (without --resume)"),
        Option("save_every", Int(), 100, "checkpoint every N iterations"),
    ), RUN + "train_texture_net", "cnnscope train-texture-net sample:coffee --iters 500 --out "
                                  "out/coffee-net.safetensors",
        positional=("model", "image"),
        returns="dict\n    ``history`` the loss per iteration, ``seconds``, ``interrupted``."),
    Verb("apply-texture-net", "apply a trained texture/style network in one forward pass", (
        Option("image", Picture(), None, "input image (style networks)", flag="", nargs="?"),
        Option("net", Text(metavar="FILE"), None, "a network from train-texture-net", required=True),
        Option("size", Int(), None, "output size (texture) or shorter side (style)"),
        Option("seed", Int(low=0), 0, "random seed: fixes the noise", group="run"),
        Option("out", Text(metavar="FILE.png"), "cnnscope-out/stylized.png", "the picture", group="output"),
        force_option(),
        *model_options(preprocessing=False)[3:4],
        *run_options(jobs=False, seed=False),
    ), RUN + "apply_texture_net", "cnnscope apply-texture-net --net out/coffee-net.safetensors --size 256 --out "
                                  "out/coffee-texture.png",
        positional=("net", "image"), formerly=("stylize",),
        returns="Tensor\n    The picture [3,H,W] in [0,1] (also written to `out`)."),
)
