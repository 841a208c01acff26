import json

import pytest
import torch
import torch.nn.functional as F

from cnnscope import CnnscopeError
from cnnscope.data import image_set
from cnnscope.transforms.equivariance import channel_correlation, equivariance_experiment
from cnnscope.transforms.transform import Transform


def _symmetric_filters(c_out=4, c_in=3):
    k = torch.randn(c_out, c_in, 3, 3)
    group = [k, k.flip(-1), k.flip(-2), k.flip(-1).flip(-2)]
    group += [g.transpose(-1, -2) for g in group]
    return sum(group) / len(group)  # invariant under flips and quarter turns


@pytest.mark.parametrize("name", ["hflip", "vflip", "rot90", "rot180"])
@pytest.mark.parametrize("stride", [1, 2])
def test_transform_commutes_with_an_equivariant_conv_net(name, stride):
    torch.manual_seed(0)
    w = _symmetric_filters()
    t = Transform.parse(name)
    x = torch.randn(2, 3, 31, 31)  # odd size: the stride-2 grid (centres 0, 2, …, 30) maps onto itself

    def net(img):
        return torch.relu(F.conv2d(img, w, stride=stride, padding=1))

    assert torch.allclose(net(t.image(x)), t.features(net(x), stride=stride, offset=0.0, image_size=31), atol=1e-4)


def test_transform_algebra():
    from cnnscope import load_image

    x = F.interpolate(load_image("sample:coffee")[None, :, :400, :400], size=(40, 40), mode="area")  # smooth
    r = Transform.parse("rotate:30")
    back = r.inverse().image(r.image(x))
    inner = back[..., 12:28, 12:28] - x[..., 12:28, 12:28]
    assert inner.abs().mean() < 0.05  # two bilinear resamplings, interior only
    mask = r.valid_mask(40, 40)
    assert not mask[0, 0] and mask[20, 20]
    assert torch.equal(Transform.parse("rot90").image(x), torch.rot90(x, 1, dims=(-2, -1)))
    assert Transform.parse("scale").factor == pytest.approx(2 ** -0.5)
    with pytest.raises(CnnscopeError, match="unknown transform"):
        Transform.parse("shear")
    f = torch.randn(3, 5, 4, 4)
    assert channel_correlation(f, 2 * f + 1).allclose(torch.ones(5, dtype=torch.float64))


def test_identity_transform_needs_no_compensation(lite0):
    images, _ = image_set(lite0, None, 6)
    r = equivariance_experiment(lite0, ["stage2"], Transform("identity"), images[:4], images[4:], task_epochs=1,
                                progress=False)
    assert r["baseline"]["uncompensated"] == r["baseline"]["no_transform"] == 0.0
    assert r["rows"][0]["spatial_only"] == 0.0 and r["rows"][0]["invariant_channels"] == 24


def test_cli_equivariance(tmp_path):
    from cnnscope.cli import main

    assert main(["equivariance", "--quick", "--transform", "hflip", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "equivariance_efficientnet_lite0_hflip.json").read_text())
    assert [r["layer"] for r in data["rows"]] == ["stem", "stage2"]
    from cnnscope.store import load_tensors

    maps, meta = load_tensors(tmp_path / "equivariance_efficientnet_lite0_hflip_maps.safetensors",
                              "cnnscope-equivariance-maps-1", "maps")
    assert maps["stem|conv.weight"].shape == (32, 32, 1, 1) and maps["stage2|conv.weight"].shape == (24, 24, 1, 1)
    assert json.loads(meta["settings"])["transform"] == "hflip"
    assert main(["equivariance", "--transform", "shear", "--out", str(tmp_path)]) == 2
