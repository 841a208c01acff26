"""The top-level Python API: one call per method, on a user's own nn.Module and on a zoo name, returning typed
results that display themselves, save what the CLI writes, and refuse bad arguments with CnnscopeError."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import cnnscope
from cnnscope import CnnscopeError
from cnnscope.images import load_image
from cnnscope.viz.notebook import CAPTION, GAP


class Block(nn.Module):
    """conv-BN-ReLU(in place)-conv-BN plus the input, then a functional relu: a ResNet basic block."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.layer1 = Block(8)
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.layer2 = Block(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = TinyResNet()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so a change would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.train()  # left in training mode, as users often do


def _snapshot(net: nn.Module) -> tuple:
    return ({k: v.clone() for k, v in net.state_dict().items()}, [m.training for m in net.modules()],
            [p.requires_grad for p in net.parameters()], [p.grad for p in net.parameters()])


def _unchanged(net, before) -> bool:
    state, training, grad_flags, grads = _snapshot(net)
    return (all(torch.equal(state[k], v) for k, v in before[0].items()) and training == before[1]
            and grad_flags == before[2] and all(g is None for g in grads))


@pytest.fixture(scope="module")
def user():
    net = _net()
    model = cnnscope.load_model(net, preprocess={"input_size": 48}, device="cpu")
    return net, model


def _png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_preimage_calls_on_a_user_module(user, tmp_path):
    net, model = user
    before = _snapshot(net)
    r = cnnscope.invert(net, "sample:chelsea", "layer1", iters=4)  # the bare nn.Module: 224 px, a new copy
    assert isinstance(r, cnnscope.api.InvertResult) and r.tensors.shape == (1, 3, 224, 224)
    assert 0 < r.normalised_error[0] < 10 and r.iterations == 4
    r = cnnscope.invert(model, "sample:chelsea", "layer1", iters=4)
    assert r.tensors.shape == (1, 3, 48, 48) and r.images[0].size == (48, 48)
    png = r._repr_png_()
    assert _png_size(png) == (48, 48 + CAPTION)  # one picture and its one-line caption
    m = cnnscope.maximize(model, "layer2", [0, 3], iters=6)
    assert m.tensors.shape == (2, 3, 48, 48) and len(m.activation_ratio) == 2
    # channel 0 of this random net is dead (ReLU: zero response, zero gradient); channel 3 must go up
    assert m.start_activation[0] == m.final_activation[0] == 0 and m.final_activation[1] > m.start_activation[1]
    assert _png_size(m._repr_png_()) == (2 * 48 + GAP, 48 + CAPTION)
    c = cnnscope.maximize(model, classes=["class 7"], iters=6, where="channel")
    assert c.final_activation[0] > c.start_activation[0] and c.job.targets[0].channel == 7
    k = cnnscope.caricature(model, np.asarray(Image.open(_sample_file(tmp_path))), "layer1", iters=6)
    assert k.relative_response > 1.0  # emphasised: more of what the layer saw
    t = cnnscope.texture(model, "sample:chelsea", iters=6)
    assert t.gram_total_after < t.gram_total_before
    s = cnnscope.style_transfer(model, "sample:chelsea", "sample:coffee", iters=6)
    assert s.tensors.shape == (1, 3, 48, 48) and s.gram_total_after < s.gram_total_before
    assert _unchanged(net, before)


def _sample_file(tmp_path):
    path = tmp_path / "cat.png"
    cnnscope.save_image(load_image("sample:chelsea"), path)
    return path


def test_backprop_and_transform_calls_on_a_user_module(user):
    net, model = user
    before = _snapshot(net)
    sal = cnnscope.saliency(model, Image.open(io.BytesIO(_png_of("sample:chelsea"))), classes=3)
    assert set(sal.maps) == {("logits class3", m) for m in ("deconvnet", "salinet", "desalinet")}  # fc: its logits
    grad = next(v for (t, m), v in sal.maps.items() if m == "salinet")
    deconv = next(v for (t, m), v in sal.maps.items() if m == "deconvnet")
    assert grad.shape == (3, 48, 48) and not torch.allclose(grad, deconv)  # the rules differ where ReLUs are
    assert len(sal.images) == 4 and sal.images[1].size == (48, 48)
    assert sal.notes == []  # it has a max-pool: the switches apply
    sel = cnnscope.selectivity(model, "layer2", limit=3, neurons=2)
    assert sel.count == 3 and set(sel.correlations) >= {"salinet", "deconvnet", "desalinet"}
    assert all(-1 <= v <= 1 for d in sel.correlations.values() for v in d.values())
    san = cnnscope.sanity(model, "sample:coffee", classes=2)
    assert san.target.endswith("class2") and len(san.blocks) >= 2
    assert all(len(curve) == len(san.blocks) for curve in san.spearman.values())
    eq = cnnscope.equivariance(model, "layer1", "hflip", limit=12)
    assert eq.row["layer"] == "layer1" and 0 <= eq.baseline["no_transform"] <= 1
    st = cnnscope.stitch(model, model, "layer1", epochs=0, limit=12)  # a network stitched into itself
    # the same network on both sides: the naive (identity) stitch is the network itself
    assert st.row["naive"] == st.baseline["B"] == {"disagreement_with_b": 0.0}
    assert st.row["regression"]["disagreement_with_b"] <= 0.5 and st.stitches
    ck = cnnscope.cka(model, model, ["layer1", "layer2"], limit=6)
    assert ck.count == 6 and ck.cka[0][0] == pytest.approx(1.0, abs=1e-5) and ck.cka[0][1] < 1 - 1e-4
    assert "<table>" in ck._repr_html_() and ck._repr_png_() is None
    assert _unchanged(net, before)


def _png_of(source: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((load_image(source).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_zoo_name_calls(tmp_path):
    name = "efficientnet_lite0"
    r = cnnscope.invert(name, "sample:chelsea", "stage2", size=64, iters=3)
    assert r.tensors.shape == (1, 3, 64, 64) and 0 < r.normalised_error[0] < 10
    files = r.save(tmp_path)
    assert files == [f"{r.job.key}.png"]
    record = json.loads((tmp_path / f"{r.job.key}.json").read_text())
    assert record["results"]["normalised_error"] == r.normalised_error and record["settings"]["layers"] == ["stage2"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / files[0])), np.asarray(r.images[0]))
    m = cnnscope.maximize(name, "stage3", 5, size=64, iters=3)
    assert m.final_activation[0] > m.start_activation[0]
    assert cnnscope.caricature(name, "sample:coffee", "stage2", size=64, iters=15).relative_response > 1
    assert cnnscope.texture(name, "sample:chelsea", size=64, iters=3, style_layers=["stage1"]).gram_total_after > 0
    deconv = cnnscope.saliency(name, "sample:chelsea", classes=282, method="deconvnet")
    assert deconv.notes and "no max-pool" in deconv.notes[0]  # Lite0 has none: said, not hidden
    sal = cnnscope.saliency(name, "sample:chelsea", classes="tiger cat", method="salinet")
    assert sal.notes == []
    assert list(sal.maps) == [("logits class282", "salinet")] and sal.maps[("logits class282", "salinet")].shape \
        == (3, 224, 224)
    h = cnnscope.hog("sample:chelsea", size=64)
    assert h.image_shape == [64, 96] and h.features_shape == [31, 8, 12] and h.images[0].size == (12 * 15, 8 * 15)
    ck = cnnscope.cka(name, name, "stage1", limit=4)
    assert ck.cka == [[pytest.approx(1.0, abs=1e-5)]]
    s = cnnscope.style_transfer(name, "sample:chelsea", "sample:coffee", size=64, iters=3, style_layers=["stage1"])
    assert s.gram_total_after < s.gram_total_before
    sel = cnnscope.selectivity(name, "stage2", limit=1, neurons=2)
    assert sel.count == 1 and all(-1 <= v <= 1 for d in sel.correlations.values() for v in d.values())
    san = cnnscope.sanity(name, "sample:chelsea")
    assert san.target == "logits class282" and san.spearman["salinet"][0] < 0.9  # randomising changes the map
    eq = cnnscope.equivariance(name, "stage1", limit=8)
    assert eq.metric == "disagreement_with_reference" and eq.row["learned"] <= eq.baseline["uncompensated"]
    st = cnnscope.stitch(name, "efficientnet_lite1", "stage1", limit=8, epochs=0)
    assert st.row["naive"]["disagreement_with_b"] > st.row["regression"]["disagreement_with_b"]


def test_every_image_type_gives_the_same_bytes():
    tensor = load_image("sample:coffee")
    array = (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    forms = [Image.fromarray(array), array, torch.from_numpy(array).permute(2, 0, 1).contiguous(),
             torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255]
    model = cnnscope.load_model(_net(), preprocess={"input_size": 32})
    pictures = [cnnscope.invert(model, f, "layer1", iters=3).tensors for f in forms]
    assert all(torch.equal(pictures[0], p) for p in pictures[1:])
    answers = cnnscope.predict(model, [array, array, forms[0]])
    assert len(answers) == 3 and answers[0] == answers[1] == answers[2]
    assert len(cnnscope.predict(model, torch.stack([forms[2].float() / 255] * 2))) == 2
    assert isinstance(cnnscope.predict(model, forms[0])[0], cnnscope.Prediction)
    # pictures of different sizes in one list: each resized and cropped on its own, as one by one
    mixed = cnnscope.predict(model, ["sample:chelsea", array, "sample:astronaut"])
    alone = [cnnscope.predict(model, s) for s in ("sample:chelsea", array, "sample:astronaut")]
    assert [[p.index for p in a] for a in mixed] == [[p.index for p in a] for a in alone]
    assert [p.probability for a in mixed for p in a] == pytest.approx([p.probability for a in alone for p in a],
                                                                      rel=1e-5)  # batched vs one: float order


@pytest.mark.parametrize("call, message", [
    (lambda: cnnscope.invert(42, "sample:chelsea", "stage1"), "model: expected a model name"),
    (lambda: cnnscope.invert("efficientnet_lite00", "sample:chelsea", "stage1"), "efficientnet_lite0"),
    (lambda: cnnscope.invert("efficientnet_lite0", "sample:chelsy", "stage1"), "sample:chelsea"),
    (lambda: cnnscope.invert("efficientnet_lite0", "sample:chelsea", "stage12"), "stage1"),
    (lambda: cnnscope.invert("efficientnet_lite0", "sample:chelsea", "stage1", iters=0), "iters"),
    (lambda: cnnscope.invert("efficientnet_lite0", {"a": 1}, "stage1"), "image: expected a picture"),
    (lambda: cnnscope.invert("efficientnet_lite0", np.full((9, 9, 3), np.nan), "stage1"), "NaN"),
    (lambda: cnnscope.invert("efficientnet_lite0", torch.rand(2, 3, 16, 16), "stage1"), "batch of 2"),
    (lambda: cnnscope.invert("efficientnet_lite0", torch.rand(16, 16, 3), "stage1"), "channels first"),
    (lambda: cnnscope.maximize("efficientnet_lite0", "stage1", 999), "out of range"),
    (lambda: cnnscope.stitch("efficientnet_lite0", layers="stage1", fit=float("nan")), "fit"),
    (lambda: cnnscope.saliency("efficientnet_lite0", "sample:chelsea", method="guided"), "unknown method"),
    (lambda: cnnscope.reproduce(findings=["prio"]), "unknown finding 'prio'; did you mean 'prior'?"),
    (lambda: cnnscope.Target("chanel", 5), "unknown target kind 'chanel'; did you mean 'channel'?"),
    (lambda: cnnscope.Target("channel", 2.5), "channel must be an integer"),
    (lambda: cnnscope.saliency("efficientnet_lite0", "sample:chelsea", method="deconvent"), "mean 'deconvnet'"),
])
def test_bad_arguments_raise_one_line_cnnscope_errors(call, message):
    with pytest.raises(CnnscopeError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_whole_runs_on_a_user_module(user, tmp_path):
    net, model = user
    before = _snapshot(net)
    f = cnnscope.reproduce(model, tmp_path / "findings", findings=["deconvnet-selectivity", "vflip"], quick=True)
    assert [x["id"] for x in f.findings] == ["deconvnet-selectivity", "vflip"]
    assert all(x["verdict"] in ("holds", "does not hold", "inconclusive", "partly holds") for x in f.findings)
    assert json.loads((tmp_path / "findings" / "findings.json").read_text())[0]["id"] == "deconvnet-selectivity"
    rep = cnnscope.report(model, tmp_path / "site", layers=["layer1"], quick=True)
    assert rep.layers == ["layer1"] and rep.computed > 0 and "layer1" in (tmp_path / "site" / "index.html").read_text()
    assert _unchanged(net, before)


class Flaky(TinyResNet):
    """Fails on its fifth forward pass: a method interrupted half-way."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 5:
            raise RuntimeError("the GPU fell off the bus")
        return super().forward(x)


def test_a_method_that_fails_half_way_leaves_the_users_module_as_it_was():
    torch.manual_seed(0)
    net = Flaky().train()
    net.fc.weight.grad = torch.ones_like(net.fc.weight)
    before = ({k: v.clone() for k, v in net.state_dict().items()}, [m.training for m in net.modules()],
              [p.requires_grad for p in net.parameters()])
    with pytest.raises(Exception, match="fell off the bus"):
        cnnscope.invert(net, "sample:chelsea", "layer1", iters=20, size=32)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before[0].items())
    assert [m.training for m in net.modules()] == before[1] and [p.requires_grad for p in net.parameters()] == before[2]
    assert torch.equal(net.fc.weight.grad, torch.ones_like(net.fc.weight)) and net.calls == 0  # a copy ran, not it


def test_report_is_the_verb_in_a_fresh_interpreter():
    """`report` is a verb and a subpackage: reading the declarations imports the subpackage, which bound the
    module to ``cnnscope.report`` (a gallery example met `'module' object is not callable`)."""
    code = ("import cnnscope; assert callable(cnnscope.report), cnnscope.report; "
            "import cnnscope.report.site; assert callable(cnnscope.report)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
