"""Any CNN a researcher brings (issue 24): a backward rule for every pointwise nonlinearity, checked against a
hand-written reference of the rule; nonlinearities the rules cannot see counted, named, and refused when none is
covered; models that return output objects, dicts or tuples; nothing-to-show notes; and the external zoo
(Hugging Face ``transformers`` and ``efficientnet_pytorch``) through every family."""

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnscope
from cnnscope import CnnscopeError, load_model
from cnnscope.backprop import backprop_maps, method_rules
from cnnscope.backprop.coverage import coverage
from cnnscope.cli import main
from cnnscope.layers import expand_layers
from cnnscope.targets import Target

from . import external_zoo

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


# ------------------------------------------------------------- every activation against a hand-written rule
def _phi(x):  # the standard normal's density and distribution
    return torch.exp(-x * x / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def _gelu_tanh_derivative(x):
    k = math.sqrt(2 / math.pi)
    u = k * (x + 0.044715 * x ** 3)
    t = torch.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


def _softplus(x):
    return torch.log1p(torch.exp(x))


# op -> (a call of it, f'(x) written out, its rectifier form (gain, negative slope))
PRELU_W = torch.tensor([0.2, -0.1, 0.3])
REFERENCE = {
    "relu": (nn.ReLU(), lambda x: (x > 0).double(), (1, 0)),
    "relu inplace": (nn.ReLU(inplace=True), lambda x: (x > 0).double(), (1, 0)),
    "relu method": (lambda x: x.relu(), lambda x: (x > 0).double(), (1, 0)),
    "relu6": (nn.ReLU6(), lambda x: ((x > 0) & (x < 6)).double(), (1, 0)),
    "hardtanh": (lambda x: F.hardtanh(x, -1.0, 1.0), lambda x: ((x > -1) & (x < 1)).double(), (1, 0)),
    "leaky_relu": (nn.LeakyReLU(0.1), lambda x: torch.where(x > 0, 1.0, 0.1).double(), (1, 0.1)),
    "prelu": (lambda x: F.prelu(x, PRELU_W.to(x)), lambda x: torch.where(x > 0, torch.ones_like(x),
                                                                         PRELU_W.to(x).view(1, 3, 1, 1)), (1, "w")),
    "elu": (nn.ELU(0.5), lambda x: torch.where(x > 0, 1.0, 0.5 * torch.exp(x)), (1, 0)),
    "celu": (nn.CELU(2.0), lambda x: torch.where(x > 0, 1.0, torch.exp(x / 2.0)), (1, 0)),
    "selu": (nn.SELU(), lambda x: SELU_SCALE * torch.where(x > 0, 1.0, SELU_ALPHA * torch.exp(x)), (SELU_SCALE, 0)),
    "gelu": (nn.GELU(), lambda x: _phi(x)[1] + x * _phi(x)[0], (1, 0)),
    "gelu tanh": (nn.GELU(approximate="tanh"), _gelu_tanh_derivative, (1, 0)),
    "silu": (nn.SiLU(), lambda x: torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x))), (1, 0)),
    "silu inplace": (lambda x: F.silu(x, inplace=True), lambda x: torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x))),
                     (1, 0)),
    "silu written out": (lambda x: x * torch.sigmoid(x),
                         lambda x: torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x))), (1, 0)),
    "mish": (nn.Mish(), lambda x: torch.tanh(_softplus(x)) + x * (1 - torch.tanh(_softplus(x)) ** 2) * torch.sigmoid(x),
             (1, 0)),
    "softplus": (nn.Softplus(beta=2.0), lambda x: torch.sigmoid(2 * x), (1, 0)),
    "hardswish": (nn.Hardswish(), lambda x: torch.where(x < -3, 0.0, torch.where(x > 3, 1.0, (2 * x + 3) / 6)),
                  (1, 0)),
    "hardsigmoid": (nn.Hardsigmoid(), lambda x: ((x > -3) & (x < 3)).double() / 6, (1 / 6, 0)),
    "sigmoid": (torch.sigmoid, lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)), (0.25, 0)),
    "tanh method": (lambda x: x.tanh(), lambda x: 1 - torch.tanh(x) ** 2, (1, 0)),
}


def _reference_rule(rule: str, g, x, derivative, form):
    """The rules as the docs state them, from the written-out derivative (never from autograd)."""
    d = derivative(x)
    if rule == "gradient":
        return g * d
    if rule == "guided":
        return torch.relu(g) * d.clamp(min=0)
    gain, negative = form
    negative = PRELU_W.double().view(1, 3, 1, 1) if negative == "w" else negative
    return gain * torch.relu(g) + negative * g.clamp(max=0)


class Around(nn.Module):
    """A convolution, the activation under test (used twice: a reused module), a convolution."""

    input_size = 8

    def __init__(self, act):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.act = act if isinstance(act, nn.Module) else None
        self.fn = None if self.act is not None else act

    def forward(self, x):
        act = self.act or self.fn
        return self.conv2(act(act(self.conv1(x)) - 0.3))


@pytest.mark.parametrize("method,rule", [("salinet", "gradient"), ("deconvnet", "deconvnet"),
                                         ("desalinet", "guided")])
@pytest.mark.parametrize("name", list(REFERENCE))
def test_every_activation_matches_its_hand_written_rule(name, method, rule):
    act, derivative, form = REFERENCE[name]
    net = Around(act).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 3
    target = Target("direction", direction=torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1)),
                    layer="output")
    ours = backprop_maps(net, x, [target], method)[:, 0]
    with torch.no_grad():  # the reversed network written out: transposed convolutions and the rule per call
        a1 = net.conv1(x)
        h1 = act(a1.clone())
        a2 = h1 - 0.3
        g = target.weights((4, 8, 8)).double().expand(2, -1, -1, -1)
        g = F.conv_transpose2d(g, net.conv2.weight, padding=1)
        g = _reference_rule(rule, g, a2, derivative, form)
        g = _reference_rule(rule, g, a1, derivative, form)
        ref = F.conv_transpose2d(g, net.conv1.weight, padding=1)
    assert torch.allclose(ours, ref, atol=1e-9, rtol=1e-6), (ours - ref).abs().max()
    if rule != "gradient":  # the rule did something: the map is not the gradient's
        grad = backprop_maps(net, x, [target], "salinet")[:, 0]
        assert not torch.allclose(ours, grad, atol=1e-6)


def test_rules_log_every_activation_by_name():
    net = Around(nn.GELU()).eval()
    with method_rules("deconvnet").applied(net, track=True) as log:
        net(torch.randn(1, 3, 8, 8, requires_grad=True))
    assert log.calls == [("act", "gelu", "deconvnet"), ("act#2", "gelu", "deconvnet")]


# ---------------------------------------------------------------- what the rules cannot see: said, refused
class Swish(torch.autograd.Function):
    """A memory-efficient Swish as efficientnet_pytorch writes it: the rules cannot see inside."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * s * (1 + x * (1 - s))


class Squash(torch.autograd.Function):
    """A custom nonlinearity that is none of the known activations: x / (1 + |x|)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x / (1 + x.abs())

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g / (1 + x.abs()) ** 2


def test_a_custom_function_that_is_an_activation_is_covered_and_equals_the_plain_one():
    x = torch.randn(1, 3, 8, 8) * 2
    t = [Target("class", 2, layer="output")]
    custom = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _Apply(Swish.apply), nn.Flatten(), nn.Linear(256, 5))
    torch.manual_seed(0)
    for m in custom:
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    custom.input_size = 8  # (a bare module says its input size for its layer table)
    plain = copy.deepcopy(custom)
    plain[1] = nn.SiLU()
    cov = coverage(custom, x, "output")
    assert cov.covered == {"silu": 1} and cov.identified == {"Swish": "silu"} and cov.complete
    for method in ("salinet", "deconvnet", "desalinet"):
        assert torch.allclose(backprop_maps(custom, x, t, method), backprop_maps(plain, x, t, method), atol=1e-6)


class _Apply(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _squash_net(with_relu: bool) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1), _Apply(Squash.apply)] + ([nn.ReLU()] if with_relu else [])
    net = nn.Sequential(*layers, nn.Conv2d(4, 4, 3, padding=1), _Apply(Squash.apply), nn.Flatten(),
                        nn.Linear(256, 5)).eval()
    net.input_size = 8
    return net


def test_unseen_nonlinearities_are_counted_named_and_refused_when_none_is_covered():
    x = torch.randn(1, 3, 8, 8)
    t = [Target("class", 1, layer="output")]
    blind = _squash_net(with_relu=False)
    assert coverage(blind, x, "output").summary() == "0 of 2 nonlinearities covered; not covered: Squash x2"
    for method in ("deconvnet", "desalinet"):
        with pytest.raises(CnnscopeError, match=r"no backward rule reaches its nonlinearities \(0 of 2 .*Squash x2"):
            backprop_maps(blind, x, t, method)
    backprop_maps(blind, x, t, "salinet")  # the gradient needs no rule
    model = load_model(_squash_net(with_relu=True), preprocess={"input_size": 8})
    result = cnnscope.saliency(model, torch.rand(3, 8, 8), classes=1)
    assert result.coverage["covered"] == {"relu": 1} and result.coverage["uncovered"] == {"Squash": 2}
    assert any("1 of 3 nonlinearities covered (relu x1); not covered: Squash x2" in n for n in result.notes)
    sel = cnnscope.selectivity(load_model(_squash_net(with_relu=False), preprocess={"input_size": 8}), "2",
                               limit=1, neurons=2)
    assert set(sel.correlations) == {"salinet"} and any("left out" in n for n in sel.notes)


def test_the_cli_refuses_a_blind_method_in_one_line(tmp_path):
    (tmp_path / "squash.py").write_text(
        "import torch, torch.nn as nn\n"
        "from tests.test_any_cnn import _squash_net\n"
        "def build():\n    return _squash_net(False)\n")
    code, out, err = _cli("saliency", "sample:chelsea", "--model", f"{tmp_path}/squash.py:build", "--input-size", "8",
                          "--class", "1", "--method", "deconvnet", "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("cnnscope: error: deconvnet cannot apply")
    assert "Squash x2" in err and not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.png"))


class Broken(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("this backward is not implemented\nsecond line")


def test_a_failing_backward_is_one_line():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), _Apply(Broken.apply), nn.Flatten(), nn.Linear(144, 3)).eval()
    net.input_size = 8
    with pytest.raises(CnnscopeError) as info:
        backprop_maps(net, torch.randn(1, 3, 8, 8), [Target("class", 0, layer="output")], "desalinet")
    assert str(info.value) == ("desalinet on Sequential at output: the backward pass failed (RuntimeError: this "
                               "backward is not implemented)")


# ------------------------------------------------------------------------ models as users hold them
class _Out:
    def __init__(self, logits):
        self.logits, self.hidden = logits, None


class Returns(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)
        self.kind = kind
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Linear(8, 4)

    def forward(self, x):
        h = self.features(x)
        logits = self.classifier(h.mean((2, 3)))
        return {"object": _Out(logits), "dict": {"hidden": h, "logits": logits}, "tuple": (logits, h),
                "tensor": logits}[self.kind]


@pytest.mark.parametrize("kind,field", [("object", ".logits"), ("dict", "['logits']"), ("tuple", "[0]"),
                                        ("tensor", "")])
def test_outputs_with_logits_inside_are_used_everywhere(kind, field):
    net = Returns(kind).eval()
    before = type(net)
    model = load_model(net, preprocess={"input_size": 32})
    x = torch.rand(3, 32, 32)
    reference = Returns("tensor").eval()(model.prepare(x))
    assert torch.allclose(model(model.prepare(x)), reference)  # the logits, whatever the forward returns
    assert [p.index for p in cnnscope.predict(model, x)] == reference[0].argsort(descending=True).tolist()[:4]
    assert next(r.kind for r in cnnscope.list_layers(model) if r.name == "output") == f"Returns{field}"
    assert len(model.classes) == 4 and type(net) is before  # the user's module is never changed
    m = cnnscope.maximize(model, classes=1, size=32, iters=3)
    assert len(m.final_activation) == 1


def test_stage_aliases_and_depth_fractions_for_a_nested_network():
    model = load_model(external_zoo.convnext(), preprocess={"input_size": 64})
    assert {k: v for k, v in model.aliases.items() if k.startswith("stage")} == {
        f"stage{i + 1}": f"convnext.encoder.stages.{i}" for i in range(4)}
    assert model.aliases["logits"] == "classifier" and model.profile.depth == (
        "stage1", "stage2", "stage3", "stage4", "logits")
    layers = expand_layers(model, "depth:0,0.5,1,stage2")
    assert layers[-1] == "stage2" and len(set(layers)) == 4
    assert layers[0] == "convnext.embeddings.patch_embeddings"  # the first feature map
    rows = {r.name: r for r in cnnscope.list_layers(model)}
    assert rows[layers[2]].shape[1:] == (2, 2)  # the last feature map (64 px / 32)
    # channels-last blocks (LayerNorm and Linear per pixel) keep their receptive field
    assert rows["convnext.encoder.stages.0.layers.0.pwconv1"].rf == (28, 28)
    with pytest.raises(CnnscopeError, match="bad depth fraction '1.5'"):
        expand_layers(model, "depth:0.5,1.5")


# --------------------------------------------------------------------------------- nothing to show is said
class Silent(nn.Module):
    """conv1's second channel is dead (ReLU of a large negative bias); conv2 is all dead."""

    input_size = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        with torch.no_grad():
            self.conv1.bias[1] = -100.0
            self.conv2.bias.fill_(-100.0)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        return self.fc(F.relu(self.conv2(h)).mean((2, 3)) + h.mean((2, 3)))


def test_a_silent_code_or_a_dead_unit_is_said_not_shown():
    model = load_model(Silent(), preprocess={"input_size": 16})
    inv = cnnscope.invert(model, "sample:chelsea", "relu()#2", size=16, iters=3)
    assert inv.notes and "code is all zero" in inv.notes[0] and "nothing to reconstruct" in inv.notes[0]
    assert "nothing to reconstruct" in json.dumps(inv.to_json())
    live = cnnscope.invert(model, "sample:chelsea", "conv1", size=16, iters=3)
    assert live.notes == [] and "notes" not in live.to_json()  # records without notes stay as they were
    dead = cnnscope.maximize(model, "relu()", 1, size=16, iters=3)
    assert dead.start_activation == dead.final_activation and "dead unit" in dead.notes[0]
    sal = cnnscope.saliency(model, "sample:chelsea", layer="relu()", channel=1)
    assert any("nothing to show" in n for n in sal.notes)


def test_the_cli_prints_the_note(tmp_path):
    path = tmp_path / "silent.py"
    path.write_text("from tests.test_any_cnn import Silent\ndef build():\n    return Silent()\n")
    code, out, err = _cli("invert", "sample:chelsea", "--model", f"{path}:build", "--layer", "relu()#2", "--input-size",
                          "16", "--iters", "3", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "note: relu()#2: the image's code is all zero" in out
    summary = json.loads(next((tmp_path / "o").glob("*_summary.json")).read_text())
    assert "nothing to reconstruct" in summary["units"][0]["notes"][0]


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ the external zoo
@pytest.mark.parametrize("name", list(external_zoo.ARCHITECTURES))
def test_the_external_zoo_runs_every_family(name, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("efficientnet_pytorch")
    net = external_zoo.ARCHITECTURES[name]()
    before = external_zoo.snapshot(net)
    status, details = external_zoo.conformance(net, tmp_path)
    assert status == {m: "ok" for m in external_zoo.METHODS}, {m: s for m, s in status.items() if s != "ok"}
    assert external_zoo.unchanged(net, before)  # the user's module is exactly as it was
    layers = details["layers"]
    assert {"stage1", "stage2", "stage3", "logits"} <= set(layers["aliases"]) and layers["depth"][-1] == "logits"
    assert layers["output"].endswith(".logits") or name.endswith("(efficientnet_pytorch)")
    for method in ("deconvnet", "desalinet"):  # every nonlinearity covered, and the maps are not the gradient
        d = details[method]
        assert "not covered" not in d["coverage"] and abs(d["correlation_with_salinet"]) < 0.99, d
        assert not any("nothing to show" in n for n in d["notes"])
    texture = details["texture"]  # Gram layers found on any net: Gatys's first activation map per resolution
    assert len(texture["layers"]) >= 4 and texture["after"] < 0.5 * texture["before"], texture
    if name.startswith("ConvNeXt"):  # its GELU maps are channels-last: its stages' maps instead
        assert texture["layers"] == ["stage1", "stage2", "stage3", "stage4"]
    else:  # one per resolution, input to output
        assert texture["strides"] == sorted(set(texture["strides"])), texture
    assert all(-1 <= v <= 1 for v in details["selectivity"]["desalinet"].values())
    assert details["cka"][0][0] == pytest.approx(1.0, abs=1e-5) and details["report"] > 0


def test_a_hugging_face_model_from_the_command_line(tmp_path):
    pytest.importorskip("transformers")
    zoo = Path(external_zoo.__file__)
    code, out, err = _cli("layers", f"{zoo}:convnext", "--input-size", "64", "--named", "--json")
    assert code == 0, err
    rows = {r["alias"]: r for r in json.loads(out)["layers"]}
    assert rows["stage2"]["name"] == "convnext.encoder.stages.1" and rows["stage2"]["stride"] == 8
    code, out, err = _cli("saliency", "sample:coffee", "--model", f"{zoo}:convnext", "--input-size", "64",
                          "--out", str(tmp_path))
    assert code == 0, err
    record = json.loads(next(tmp_path.glob("saliency_*.json")).read_text())
    assert record["results"]["coverage"]["covered"] == {"gelu": 4} and record["results"]["coverage"]["uncovered"] == {}
