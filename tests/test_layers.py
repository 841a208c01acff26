import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnscope import Capture, CnnscopeError, Truncated, capture, get_layer, load_image, load_model
from cnnscope.layers import format_table, list_layers, resolve

# Hand-computed (rf, stride, offset) for torchvision AlexNet at 224 px; offset = centre of unit 0's field.
ALEXNET = {
    "conv1": (11, 4, 3), "relu1": (11, 4, 3), "pool1": (19, 8, 7), "conv2": (51, 8, 7), "pool2": (67, 16, 15),
    "conv3": (99, 16, 15), "conv4": (131, 16, 15), "conv5": (163, 16, 15), "pool5": (195, 32, 31),
}
VGG16 = {
    "conv1_1": (3, 1, 0), "conv1_2": (5, 1, 0), "pool1": (6, 2, 0.5), "conv2_1": (10, 2, 0.5),
    "conv2_2": (14, 2, 0.5), "pool2": (16, 4, 1.5), "conv3_1": (24, 4, 1.5), "conv3_3": (40, 4, 1.5),
    "pool3": (44, 8, 3.5), "conv4_1": (60, 8, 3.5), "conv4_3": (92, 8, 3.5), "pool4": (100, 16, 7.5),
    "conv5_1": (132, 16, 7.5), "conv5_3": (196, 16, 7.5), "pool5": (212, 32, 15.5),
}


@pytest.mark.parametrize("name,golden", [("alexnet", ALEXNET), ("vgg16", VGG16)])
def test_receptive_fields_match_hand_computed(name, golden):
    model = load_model(name, random_weights=True)
    for alias, (rf, stride, offset) in golden.items():
        info = get_layer(model, alias)
        assert info.rf == (rf, rf), alias
        assert info.stride == (stride, stride), alias
        assert info.offset == (offset, offset), alias
    assert get_layer(model, "fc8").is_global and get_layer(model, "fc8").shape == (1000,)


def test_lite0_table(lite0):
    strides = {a: get_layer(lite0, a).stride[0] for a in ["stem", "stage1", "stage2", "stage3", "stage4",
                                                           "stage5", "stage6", "stage7", "head"]}
    assert strides == {"stem": 2, "stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16, "stage5": 16,
                       "stage6": 32, "stage7": 32, "head": 32}
    stem = get_layer(lite0, "stem")
    # TF SAME on an even input pads only at the end: unit 0 sees pixels 0..2, not -1..1
    assert stem.geometry.h.start == 0 and stem.rf == (3, 3) and stem.shape == (32, 112, 112)
    assert get_layer(lite0, "logits").shape == (1000,)
    text = format_table(list_layers(lite0))
    assert "_blocks.15" in text and "stage7" in text


class GeometryNet(nn.Module):
    """Linear (no ReLU) so the gradient's support is exactly the receptive field."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, stride=2)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.conv_c = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        for p in self.parameters():
            p.data.abs_().add_(0.01)

    def forward(self, x):
        x = self.conv_a(F.pad(x, [0, 1, 0, 1]))  # TF-style asymmetric padding via a functional call
        x = x + self.conv_b(x)  # residual
        return self.conv_c(self.pool(x))


def _gradient_support(net, layer, size, unit):
    x = torch.rand(1, 3, size, size, requires_grad=True)
    act = capture(net, x, [layer])[layer]
    act[0, :, unit[0], unit[1]].sum().backward()
    rows = torch.nonzero(x.grad[0].abs().sum(0).sum(1)).flatten()
    cols = torch.nonzero(x.grad[0].abs().sum(0).sum(0)).flatten()
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


@pytest.mark.parametrize("layer", ["conv_a", "conv_b", "pool", "conv_c"])
def test_geometry_agrees_with_gradient_support(layer):
    net = GeometryNet()
    info = next(r for r in list_layers(net, 64) if r.name == layer)
    g = info.geometry
    i, j = 5, 6  # an interior unit: its field is not clipped by the image border
    (r0, r1), (c0, c1) = _gradient_support(net, layer, 64, (i, j))
    assert (r0, r1) == (g.h.start + i * g.h.stride, g.h.end + i * g.h.stride)
    assert (c0, c1) == (g.w.start + j * g.w.stride, g.w.end + j * g.w.stride)


def test_lite0_geometry_agrees_with_gradient_support(lite0):
    info = get_layer(lite0, "stage2")
    g = info.geometry
    x = lite0.prepare(load_image("sample:astronaut")).requires_grad_(True)
    act = capture(lite0, x, ["stage2"])["stage2"]
    i, j = 20, 30
    act[0, :, i, j].sum().backward()
    support = x.grad[0].abs().sum(0)
    rows, cols = torch.nonzero(support.sum(1)).flatten(), torch.nonzero(support.sum(0)).flatten()
    assert (int(rows.min()), int(rows.max())) == (g.h.start + i * g.h.stride, g.h.end + i * g.h.stride)
    assert (int(cols.min()), int(cols.max())) == (g.w.start + j * g.w.stride, g.w.end + j * g.w.stride)


def test_capture_matches_plain_forward_and_keeps_gradients(lite0):
    x = lite0.prepare(load_image("sample:coffee"))
    feats = capture(lite0, x, ["stage3", "logits", "_blocks.1._act0"])
    assert list(feats) == ["stage3", "logits", "_blocks.1._act0"]  # request order
    assert torch.allclose(feats["logits"], lite0(x), atol=1e-5)
    net = lite0.net
    h = net._stem_act(net._bn0(net._conv_stem(x)))
    for block in net._blocks[:5]:
        h = block(h)
    assert torch.allclose(feats["stage3"], h, atol=1e-5)
    xg = x.clone().requires_grad_(True)
    Truncated(lite0, "stage3")(xg)[0, 3].sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_zoo_networks_run_channels_last_with_the_same_numbers(lite0):
    """The zoo's convolutions are laid out channels-last (faster on the CPU); the numbers are a contiguous
    copy's, and a captured map's gradient arrives channels-last whatever the objective's own layout (the
    network's backward would take slow mixed-layout paths otherwise)."""
    conv = lite0.net._conv_stem.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    reference = load_model("efficientnet_lite0").net.to(memory_format=torch.contiguous_format)
    assert reference._conv_stem.weight.is_contiguous()
    x = lite0.prepare(load_image("sample:coffee"))
    assert torch.allclose(lite0(x), reference(x), atol=1e-4)
    xg = x.clone().requires_grad_(True)
    feats = capture(lite0, xg, ["stem"])["stem"]
    layouts = []
    feats.register_hook(lambda g: layouts.append(g.is_contiguous(memory_format=torch.channels_last)))
    feats[:, 3, 50, 50].sum().backward()  # an index's gradient is laid out contiguously
    assert layouts == [True]
    xr = x.clone().requires_grad_(True)
    reference_stem = reference._stem_act(reference._bn0(reference._conv_stem(xr)))
    reference_stem[:, 3, 50, 50].sum().backward()
    assert torch.allclose(xg.grad, xr.grad, atol=1e-5)


def test_a_capture_kept_between_calls_holds_no_activations(lite0):
    x = lite0.prepare(load_image("sample:coffee"))
    cut = Truncated(lite0, "stage2")
    with Capture(lite0, ["stage1", "stage2"]) as phi:
        feats = phi(x)
        assert phi.store == {} and cut._capture.store == {}
    assert cut(x).shape == feats["stage2"].shape and cut._capture.store == {}


def test_forward_stops_at_deepest_requested_layer(lite0):
    calls = []
    handles = [lite0.net._blocks[i].register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i in range(16)]
    handles.append(lite0.net._fc.register_forward_hook(lambda m, a, o: calls.append("fc")))
    try:
        with Capture(lite0, ["stage1", "stage2"]) as phi:
            phi(torch.zeros(1, 3, 224, 224))
    finally:
        for h in handles:
            h.remove()
    assert calls == [0, 1, 2]  # stage2 ends at block 2; nothing after it ran


def test_capture_does_not_leak_into_normal_forward(lite0):
    x = torch.zeros(1, 3, 224, 224)
    with Capture(lite0, ["stage1"]):
        out = lite0(x)  # hooks are inactive outside a capture call
    assert out.shape == (1, 1000)


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)  # reused, in place
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = self.act(self.conv2(x))
        x = self.act(self.conv2(x))
        return self.fc(x.relu().mean((2, 3)))


def test_functional_and_reused_layers():
    torch.manual_seed(0)
    net = FunctionalNet().eval()
    names = [r.name for r in list_layers(net, 32)]
    assert names == ["conv1", "relu()", "max_pool2d()", "conv2", "act", "conv2#2", "act#2", "relu()#2", "fc",
                     "output"]
    x = torch.randn(2, 3, 32, 32)
    got = capture(net, x, ["relu()", "conv2#2", "act#2", "max_pool2d()"])
    r1 = F.relu(net.conv1(x))
    h = torch.relu(net.conv2(F.max_pool2d(r1, 2)))
    c2 = net.conv2(h)
    assert torch.allclose(got["relu()"], r1)
    assert torch.allclose(got["conv2#2"], c2)  # not overwritten by the in-place ReLU that follows
    assert (got["conv2#2"] < 0).any()
    assert torch.allclose(got["act#2"], torch.relu(c2))
    assert get_layer(net, "max_pool2d()").stride == (2, 2)


def test_unknown_layer_suggests_closest(alexnet, lite0):
    with pytest.raises(CnnscopeError, match=r"unknown layer 'conv6' for alexnet; closest: .*conv5"):
        resolve(alexnet, "conv6")
    with pytest.raises(CnnscopeError, match=r"closest: .*stage7"):
        resolve(lite0, "stage8")
    assert resolve(lite0, "stage3") == "_blocks.4"


def test_torchscript_exposes_output_only(tmp_path, alexnet):
    path = tmp_path / "alex.pt"
    torch.jit.script(alexnet.net).save(str(path))
    model = load_model(str(path))
    assert [r.name for r in list_layers(model)] == ["output"]
    with pytest.raises(CnnscopeError, match="TorchScript models expose only 'output'"):
        resolve(model, "features.0")
    x = model.prepare(load_image("sample:coffee"))
    assert capture(model, x, "output")["output"].shape == (1, 1000)
