"""CNNs nobody here wrote, as researchers bring them: six Hugging Face ``transformers`` image classifiers and
``efficientnet_pytorch``'s EfficientNet, with random weights at small widths (the architecture, not its size:
CI runs them all in seconds). Test-only: ``transformers`` and ``efficientnet_pytorch`` are in the dev extra.

Each builder is also a ``--model tests/external_zoo.py:NAME`` factory. `conformance` runs every family of
cnnscope on one of them and says, per method, "ok" or the one-line reason it cannot apply; the conformance
test asserts it and ``benchmarks/compat.py`` prints it as the README's compatibility table.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

SIZE = 64  # input size: small pictures, the same code paths


def _initialised(net: nn.Module) -> nn.Module:
    """Random weights that keep a signal alive through depth, as a trained network's do: He-normal convolutions
    and BatchNorm statistics measured on a few pictures (Hugging Face's own initialisation, or PyTorch's default,
    shrinks activations so much per block that the logits of the deeper nets do not depend on the picture, and
    every method would have nothing to show)."""
    from cnnscope.images import load_image  # (the package under test)

    torch.manual_seed(0)
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a plain average over the calibration pass
    pictures = [load_image(f"sample:{n}") for n in ("chelsea", "coffee", "astronaut", "rocket", "brick", "grass")]
    batch = torch.stack([nn.functional.interpolate(p[None], size=(SIZE, SIZE), mode="area")[0] for p in pictures])
    net.train()
    with torch.no_grad():
        net((batch - 0.45) / 0.225)
    return net.eval()


def _hf():
    import transformers  # (imported when a model is built: the module must import without the dev extra)

    transformers.logging.set_verbosity_error()
    return transformers


def resnet() -> nn.Module:
    t = _hf()
    return _initialised(t.ResNetForImageClassification(t.ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10)))


def convnext() -> nn.Module:
    t = _hf()
    return _initialised(t.ConvNextForImageClassification(t.ConvNextConfig(
        hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10, layer_scale_init_value=1.0)))


def regnet() -> nn.Module:
    t = _hf()
    return _initialised(t.RegNetForImageClassification(t.RegNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], groups_width=8, num_labels=10)))


def mobilenetv2() -> nn.Module:
    t = _hf()
    return _initialised(t.MobileNetV2ForImageClassification(t.MobileNetV2Config(
        depth_multiplier=0.35, num_labels=10, image_size=SIZE)))


def efficientnet() -> nn.Module:
    t = _hf()
    return _initialised(t.EfficientNetForImageClassification(t.EfficientNetConfig(
        width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, image_size=SIZE, num_labels=10)))


def mobilevit() -> nn.Module:
    t = _hf()
    return _initialised(t.MobileViTForImageClassification(t.MobileViTConfig(
        image_size=SIZE, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 64], num_labels=10)))


def effnet_pytorch() -> nn.Module:
    """efficientnet_pytorch's EfficientNet-B0 layout at half width; its Swish is a custom autograd.Function."""
    from efficientnet_pytorch import EfficientNet

    return _initialised(EfficientNet.from_name("efficientnet-b0", num_classes=10, image_size=SIZE,
                                               width_coefficient=0.5))


ARCHITECTURES = {
    "ResNet (HF)": resnet, "ConvNeXt (HF)": convnext, "RegNetY (HF)": regnet, "MobileNetV2 (HF)": mobilenetv2,
    "EfficientNet (HF)": efficientnet, "MobileViT (HF)": mobilevit,
    "EfficientNet (efficientnet_pytorch)": effnet_pytorch,
}
METHODS = ("layers", "predict", "invert", "maximize class", "maximize channel", "caricature", "texture", "salinet",
           "deconvnet", "desalinet", "selectivity", "sanity", "equivariance", "stitch", "cka", "report")
TITLES = {"layers": "layers", "predict": "predict", "invert": "invert", "maximize class": "max. class",
          "maximize channel": "max. channel", "caricature": "caricature", "texture": "texture", "salinet": "SaliNet",
          "deconvnet": "DeConvNet", "desalinet": "DeSaliNet", "selectivity": "selectivity", "sanity": "sanity",
          "equivariance": "equivariance", "stitch": "stitch", "cka": "CKA", "report": "report"}


def compatibility_table(out: Path) -> str:
    """The compatibility table (Markdown) as `conformance` finds it now: per architecture, ✓ or the one-line reason
    a method cannot apply. The documentation site builds its page from it; benchmarks/compat.py prints it."""
    lines = ["| architecture | " + " | ".join(TITLES[m] for m in METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for name, build in ARCHITECTURES.items():
        status, _ = conformance(build(), out / "".join(c if c.isalnum() else "_" for c in name))
        lines.append(f"| {name} | " + " | ".join("✓" if status[m] == "ok" else status[m] for m in METHODS) + " |")
    return "\n".join(lines) + "\n"


def snapshot(net: nn.Module) -> tuple:
    """Everything of a module a method could change: state, training flags, requires_grad, .grad, hooks, class."""
    return ({k: v.clone() for k, v in net.state_dict().items()}, [m.training for m in net.modules()],
            [p.requires_grad for p in net.parameters()], [p.grad is None for p in net.parameters()],
            [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()], type(net))


def unchanged(net: nn.Module, before: tuple) -> bool:
    after = snapshot(net)
    return all(torch.equal(after[0][k], v) for k, v in before[0].items()) and after[1:] == before[1:]


def conformance(net: nn.Module, out: Path) -> tuple[dict, dict]:
    """Every family on `net` (an nn.Module): ({method: "ok" or the reason}, {method: measured details})."""
    import cnnscope  # (the package under test)

    status, details = {}, {}
    model = cnnscope.load_model(net, preprocess={"input_size": SIZE}, device="cpu")
    stage = model.profile.conv_layers[len(model.profile.conv_layers) // 2]

    def attempt(name, fn):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                details[name] = fn()
            status[name] = "ok"
        except cnnscope.CnnscopeError as err:
            status[name] = str(err)

    attempt("layers", lambda: {"aliases": dict(model.aliases), "depth": list(model.profile.depth),
                               "output": next(r.kind for r in cnnscope.list_layers(model) if r.name == "output")})
    attempt("predict", lambda: cnnscope.predict(model, "sample:chelsea")[0].index)
    attempt("invert", lambda: cnnscope.invert(model, "sample:chelsea", stage, size=SIZE, iters=4).normalised_error)
    attempt("maximize class", lambda: _rise(cnnscope.maximize(model, classes=3, size=SIZE, iters=12)))
    attempt("maximize channel", lambda: _rise(cnnscope.maximize(model, stage, 1, size=SIZE, iters=12)))
    attempt("caricature", lambda: cnnscope.caricature(model, "sample:chelsea", stage, size=SIZE,
                                                      iters=4).relative_response)
    attempt("texture", lambda: _texture(model, cnnscope.texture(model, "sample:brick", size=SIZE, iters=12)))
    maps = {}
    for method in ("salinet", "deconvnet", "desalinet"):
        def one(method=method):
            r = cnnscope.saliency(model, "sample:chelsea", classes=3, method=method)
            maps[method] = r.maps[(r.rows[0]["target"], method)]
            return {"notes": r.notes, "coverage": r.coverage["summary"],
                    "correlation_with_salinet": None if method == "salinet" else _corr(maps["salinet"], maps[method])}
        attempt(method, one)
    attempt("selectivity", lambda: cnnscope.selectivity(model, stage, limit=1, neurons=2).correlations)
    attempt("sanity", lambda: cnnscope.sanity(model, "sample:coffee", classes=3).spearman)
    attempt("equivariance", lambda: cnnscope.equivariance(model, stage, "hflip", limit=8).row)
    attempt("stitch", lambda: _self_stitch(cnnscope.stitch(model, model, stage, epochs=0, limit=8)))
    attempt("cka", lambda: cnnscope.cka(model, model, [stage, model.profile.logits], limit=4).cka)
    attempt("report", lambda: cnnscope.report(model, out / "report", quick=True).computed)
    return status, details


def _texture(model, result) -> dict:
    """The default Gram layers (chosen for a net that declares none), their strides and the total Gram loss
    before / after."""
    import cnnscope

    layers = [k.removeprefix("gram[").removesuffix("]") for k in result.gram_after]  # keyed by the terms' labels
    return {"layers": layers, "strides": [cnnscope.get_layer(model, n).stride for n in layers],
            "before": result.gram_total_before, "after": result.gram_total_after}


def _rise(result) -> tuple | str:
    """(start, final) response of the unit; a handful of steps at 64 px need not raise every unit, but the
    pictures must be finite and a unit that cannot move must be said to be dead."""
    start, final = result.start_activation[0], result.final_activation[0]
    if not (torch.isfinite(result.tensors).all() and abs(final) < float("inf")):
        raise AssertionError(f"non-finite pictures or response ({start} -> {final})")
    if start == final:
        if not result.notes:
            raise AssertionError(f"a unit that never moved ({start}) without a note")
        return "dead unit (said in the notes)"
    return start, final


def _self_stitch(result) -> dict:
    if result.row["naive"] != result.baseline["B"]:  # a network stitched into itself: identity = the network
        raise AssertionError(f"naive stitch {result.row['naive']} != B {result.baseline['B']}")
    return result.row


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1])


def copied(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net)
