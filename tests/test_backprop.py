import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnscope import CnnscopeError, load_image, load_model
from cnnscope.backprop import BackpropRules, backprop_maps, explain, method_rules, render
from cnnscope.backprop.analysis import cascading_randomisation, pearson, selectivity, spearman
from cnnscope.backprop.rules import Activation, ActivationRule, MaxPoolRule, get_rule
from cnnscope.targets import Target


# ----------------------------------------------------------------------------------- golden, per rule
@pytest.mark.parametrize("op,args,rule,expected", [
    ("relu", (), "gradient", [0, -1, 1, 0]),
    ("relu6", (), "gradient", [0, -1, 0, 0]),  # ReLU6: x=7 is saturated
    ("relu", (), "deconvnet", [1, 0, 1, 2]),
    ("relu6", (), "deconvnet", [1, 0, 1, 2]),
    ("relu", (), "guided", [0, 0, 1, 0]),
    ("relu6", (), "guided", [0, 0, 0, 0]),
    ("leaky_relu", (0.1,), "gradient", [0.1, -1, 1, 0.2]),
    ("leaky_relu", (0.1,), "deconvnet", [1, -0.1, 1, 2]),
    ("hardtanh", (0.0, 6.0), "guided", [0, 0, 0, 0]),
])
def test_rectifier_rules_golden(op, args, rule, expected):
    x = torch.tensor([-1.0, 2.0, 7.0, -3.0], requires_grad=True)
    g = torch.tensor([1.0, -1.0, 1.0, 2.0])
    y = ActivationRule.apply(x, Activation.of_call(op, (x, *args), {}), get_rule(rule))
    y.backward(g)
    assert torch.allclose(x.grad, torch.tensor(expected, dtype=torch.float32))


X_POOL = torch.tensor([[1.0, 2, 0, 0], [3, 4, 0, 5], [0, 0, 1, 1], [0, 6, 1, 2]]).view(1, 1, 4, 4)
G_POOL = torch.tensor([[10.0, 20], [30, 40]]).view(1, 1, 2, 2)


@pytest.mark.parametrize("rule,expected", [
    ("switches", [[0, 0, 0, 0], [0, 10, 0, 20], [0, 0, 0, 0], [0, 30, 0, 40]]),  # to each window's arg-max
    ("uniform", [[2.5, 2.5, 5, 5], [2.5, 2.5, 5, 5], [7.5, 7.5, 10, 10], [7.5, 7.5, 10, 10]]),
    ("passthrough", [[10, 10, 20, 20], [10, 10, 20, 20], [30, 30, 40, 40], [30, 30, 40, 40]]),
    ("centre", [[10, 0, 20, 0], [0, 0, 0, 0], [30, 0, 40, 0], [0, 0, 0, 0]]),  # even window: top-left middle
])
def test_max_pool_rules_golden(rule, expected):
    x = X_POOL.clone().requires_grad_(True)
    y = MaxPoolRule.apply(x, 2, 2, 0, 1, False, get_rule(rule))
    assert torch.equal(y, F.max_pool2d(X_POOL, 2))  # the forward never changes
    y.backward(G_POOL)
    assert torch.equal(x.grad, torch.tensor(expected, dtype=torch.float32).view(1, 1, 4, 4))


def test_overlapping_pool_switches_accumulate_like_autograd():
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    g = torch.randn(2, 3, 4, 4)
    ref, = torch.autograd.grad(F.max_pool2d(x, 3, 2), x, g)
    y = MaxPoolRule.apply(x, 3, 2, 0, 1, False, get_rule("switches"))
    ours, = torch.autograd.grad(y, x, g)
    assert torch.allclose(ours, ref)
    y = MaxPoolRule.apply(x, 3, 2, 1, 1, False, get_rule("centre"))  # centre of a 3x3 window at stride 2, padding 1
    ours, = torch.autograd.grad(y, x, torch.ones(2, 3, 5, 5))
    assert torch.equal(ours[0, 0, ::2, ::2], torch.ones(5, 5)) and ours[0, 0, 1::2].abs().sum() == 0


# ------------------------------------------------------------------- a tiny net and a hand-written reference
class Tricky(nn.Module):
    """Everything Captum misses: a functional relu, a ReLU6 module, and one ReLU module used twice."""

    input_size = 8  # lets cnnscope trace the layer table of this bare module

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)
        self.act6 = nn.ReLU6()
        self.shared = nn.ReLU()
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = self.act6(self.conv2(x))
        x = self.shared(self.conv3(x))
        x = self.shared(x + 0.5)  # reused module
        return self.fc(x.flatten(1))


def reference_backward(net: Tricky, x: torch.Tensor, k: int, rule: str) -> torch.Tensor:
    """The reversed network written out by hand: transposed convolutions, switches, and the rule at every
    rectifier (independent of cnnscope's mechanism)."""
    def back(pre, g, hi=None):
        active = (pre > 0) if hi is None else (pre > 0) & (pre < hi)
        if rule == "gradient":
            return g * active
        if rule == "deconvnet":
            return torch.relu(g)
        return torch.relu(g * active)

    c1 = net.conv1(x)
    r1 = F.relu(c1)
    p1, idx = F.max_pool2d(r1, 2, return_indices=True)
    c2 = net.conv2(p1)
    r2 = F.relu6(c2)
    c3 = net.conv3(r2)
    r3 = F.relu(c3)
    a4 = r3 + 0.5
    g = net.fc.weight[k].view(1, 6, 4, 4)
    g = back(a4, g)
    g = back(c3, g)
    g = F.conv_transpose2d(g, net.conv3.weight, padding=1)
    g = back(c2, g, hi=6.0)
    g = F.conv_transpose2d(g, net.conv2.weight, padding=1)
    g = F.max_unpool2d(g, idx, 2, output_size=r1.shape[-2:])
    g = back(c1, g)
    return F.conv_transpose2d(g, net.conv1.weight, padding=1)


@pytest.mark.parametrize("method,rule", [("salinet", "gradient"), ("deconvnet", "deconvnet"), ("desalinet", "guided")])
def test_tricky_net_matches_hand_written_reversed_network(method, rule):
    net = Tricky().eval()
    x = torch.randn(1, 3, 8, 8)
    ours = backprop_maps(net, x, [Target("class", 2, layer="output")], method)[0, 0]
    with torch.no_grad():
        ref = reference_backward(net, x, 2, rule)[0]
    assert torch.allclose(ours, ref, atol=1e-5)


def test_captum_misses_what_we_catch():
    captum = pytest.importorskip("captum.attr")
    net = Tricky().eval()
    x = torch.randn(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum.Deconvolution(net).attribute(x.clone().requires_grad_(True), target=2)[0]
    ours = backprop_maps(net, x, [Target("class", 2, layer="output")], "deconvnet")[0, 0]
    with torch.no_grad():
        ref = reference_backward(net, x, 2, "deconvnet")[0]
    assert torch.allclose(ours, ref, atol=1e-5)
    assert not torch.allclose(theirs, ref, atol=1e-3)  # Captum silently leaves F.relu and ReLU6 alone


@pytest.mark.parametrize("method,captum_name", [("deconvnet", "Deconvolution"), ("desalinet", "GuidedBackprop")])
def test_equal_to_captum_where_captum_applies(method, captum_name):
    captum = pytest.importorskip("captum.attr")
    model = load_model("alexnet", random_weights=True)
    x = model.prepare(load_image("sample:chelsea"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(captum, captum_name)(model.net).attribute(x.clone().requires_grad_(True), target=285)
    ours = backprop_maps(model, x, [Target("class", 285, layer="logits")], method)[:, 0]
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


def test_salinet_is_exactly_autograd(lite0):
    x = lite0.prepare(load_image("sample:coffee"))
    ours = backprop_maps(lite0, x, [Target("neuron", 7, 5, 6, layer="stage4")], "salinet")[0, 0]
    xx = x.clone().requires_grad_(True)
    feat = lite0.net._blocks[7](lite0.net._blocks[6](lite0.net._blocks[5](_front(lite0, xx))))
    ref, = torch.autograd.grad(feat[0, 7, 5, 6], xx)
    assert torch.equal(ours, ref[0]) or torch.allclose(ours, ref[0], atol=1e-7, rtol=0)


def _front(model, x):
    net = model.net
    h = net._stem_act(net._bn0(net._conv_stem(x)))
    for block in net._blocks[:5]:
        h = block(h)
    return h


def test_no_state_left_after_the_context(lite0):
    x = lite0.prepare(load_image("sample:chelsea"))
    backprop_maps(lite0, x, [Target("class", 1, layer="logits")], "deconvnet")
    xx = x.clone().requires_grad_(True)
    out = lite0.net(xx)[0, 285]
    g, = torch.autograd.grad(out, xx)
    xx2 = x.clone().requires_grad_(True)
    with BackpropRules().applied(lite0):  # all-default rules = plain autograd
        g_default, = torch.autograd.grad(lite0.net(xx2)[0, 285], xx2)
    assert torch.equal(g, g_default)
    assert not lite0.net._forward_hooks and not lite0.net._forward_pre_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in lite0.net.modules())


def test_batched_targets_equal_one_at_a_time(lite0):
    crops = [load_image(f"sample:{n}")[:, :300, :300] for n in ("chelsea", "coffee")]
    x = lite0.prepare(torch.stack(crops))
    targets = [Target("neuron", c, layer="stage5") for c in (3, 40, 77)]
    together = backprop_maps(lite0, x, targets, "desalinet")
    assert together.shape == (2, 3, 3, 224, 224)
    for t, target in enumerate(targets):
        alone = backprop_maps(lite0, x[1:], [target], "desalinet")[0, 0]
        assert torch.allclose(together[1, t], alone, atol=1e-6)


def test_rules_by_name_type_and_op():
    net = Tricky().eval()
    x = torch.randn(1, 3, 8, 8)
    rules = BackpropRules(rectifier="gradient", layers={"act6": "deconvnet", nn.ReLU: "guided", "relu": "deconvnet"})
    with rules.applied(net) as log:
        net(x)
    assert log.calls == [("relu()", "relu", "deconvnet"), ("max_pool2d()", "max_pool2d", "switches"),
                         ("act6", "hardtanh", "deconvnet"),
                         ("shared", "relu", "guided"), ("shared#2", "relu", "guided")]
    with pytest.raises(CnnscopeError, match="unknown backward rule"):
        BackpropRules(layers={"act6": "sideways"})
    with pytest.raises(CnnscopeError, match="unknown layer"):
        with BackpropRules(layers={"act7": "guided"}).applied(net):
            pass


def test_explain_lists_transposed_blocks(alexnet):
    rows = explain(alexnet, method_rules("deconvnet", "centre"))
    by_alias = {r["alias"]: r["backward"] for r in rows if r["alias"]}
    assert by_alias["relu5"].startswith("deconvnet") and by_alias["pool5"].startswith("centre")
    assert "transposed" in by_alias["conv1"] and rows[0]["alias"] == "fc8"


def test_render_and_correlations():
    m = torch.randn(2, 3, 8, 8)
    for mode in ("signed", "abs", "max"):
        r = render(m, mode)
        assert r.shape == m.shape and r.min() >= 0 and r.max() <= 1
    a = torch.randn(100)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0) and spearman(a, a ** 3) == pytest.approx(1.0)


def test_deconvnet_is_not_neuron_selective(lite0):
    images = [load_image("sample:chelsea"), load_image("sample:coffee")]
    result = selectivity(lite0, images, "stage6", neurons=3, progress=False)
    assert result["deconvnet"]["max_vs_random_neuron"] > 0.9
    assert result["salinet"]["max_vs_random_neuron"] < 0.5
    assert result["deconvnet"]["max_vs_random_neuron"] > result["salinet"]["max_vs_random_neuron"] + 0.4


def test_cascading_randomisation_curve(alexnet):
    r = cascading_randomisation(alexnet, load_image("sample:coffee"), Target("class", 967, layer="logits"),
                                methods=("salinet", "deconvnet"), progress=False)
    assert r["blocks"][:2] == ["classifier.6", "classifier.4"] and len(r["spearman"]["salinet"]) == len(r["blocks"])
    sal, dec = r["spearman"]["salinet"], r["spearman"]["deconvnet"]
    assert sal[0] < 0.8  # the gradient changes as soon as the top layer's weights do
    assert dec[0] > dec[-1] + 0.2  # DeConvNet's map loses its resemblance only as the lower layers go


def test_selectivity_holds_one_picture_at_a_time(lite0, monkeypatch):
    """A folder's pictures are decoded as the protocol reaches them (`data.Pictures`), not all first: the
    progress wrapper keeps a sized view lazy, and the numbers equal those of the pictures loaded up front."""
    from cnnscope import data, progress
    from cnnscope.backprop.analysis import selectivity

    loads = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda s: loads.append(s) or real(s))
    pictures = data.stream_images(None, 2)
    assert len(pictures) == 2 and loads == []
    walk = progress.iterate(pictures, "test", show=False)
    next(walk)
    assert loads == ["sample:chelsea"]  # one decoded, the next not yet
    lazy = selectivity(lite0, pictures, "stage6", neurons=2, progress=False)
    eager = selectivity(lite0, [real(s) for s in pictures.sources], "stage6", neurons=2, progress=False)
    assert lazy == eager
