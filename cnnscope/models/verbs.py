"""The verbs about models themselves: models, layers, predict, activations, samples (run in `commands`)."""

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
    force_option,
    model_options,
    run_options,
)

RUN = "cnnscope.models.commands:"

VERBS = (
    Verb("models", "list the model zoo and whether each model's weights are installed", (), RUN + "models",
         "cnnscope models --json", api="list_models", json=True,
         returns="list of ZooEntry\n    Every zoo model: name, description, preprocessing, weights source."),
    Verb("layers", "layer table: output shape, receptive field, stride, offset", (
        *model_options(positional=True), *run_options(jobs=False),
        Option("layer", Names(metavar="NAME"), None, "only these layers (repeatable)", repeat=True),
        Option("named", Flag(), False, "only layers with a friendly alias"),
    ), RUN + "layers", "cnnscope layers efficientnet_lite0 --named", api="list_layers", positional=("model",),
        json=True, returns="list of LayerInfo\n    Per layer: name, alias, output shape, receptive field, effective "
                           "stride and offset in input pixels."),
    Verb("predict", "top-k ImageNet classes for images", (
        Option("images", Pictures(), None, "image file, sample:NAME, or a folder (its images)", flag="", nargs="+",
               required=True),
        *model_options(), *run_options(jobs=False),
        Option("top_k", Int(), 5, "how many classes"),
    ), RUN + "predict", "cnnscope predict sample:chelsea sample:coffee --top-k 3", positional=("model", "images"),
        json=True, doc="Pictures are loaded as they are predicted, 16 per forward: a whole validation set in flat "
                       "memory.",
        returns="list of Prediction, or a list of such lists\n    (index, name, probability) for one picture; one "
                "list per picture for several (a list, a folder or a tensor [N,3,H,W])."),
    Verb("activations", "capture activations at named layers (forward truncated)", (
        Option("image", Picture(), None, IMAGE_HELP, flag="", required=True),
        *model_options(), *run_options(jobs=False),
        Option("layer", Names(metavar="NAME"), None, "layer (repeatable; several comma-separated in Python)",
               repeat=True, required=True),
        Option("out", Text(metavar="FILE"), None, "save as .safetensors (+ .json settings beside it)",
               group="output"),
        force_option(),
    ), RUN + "activations", "cnnscope activations sample:chelsea --layer stage3 --layer stage5",
        positional=("model", "image", "layer"), json=True,
        returns="dict of str to Tensor\n    Each layer's activation [1,C,H,W] (the forward stops at the deepest)."),
    Verb("samples", "list the bundled sample images (use as sample:NAME)", (), RUN + "samples", "cnnscope samples",
         api=""),
)
