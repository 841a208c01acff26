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


# ------------------------------------------------------------------- closed-form M_g: planted maps
def test_moments_ridge_recovers_a_planted_linear_map():
    from cnnscope.transforms.equivalence import Moments, choose_ridge

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    moments = []
    for _ in range(2):
        h = torch.randn(40, 5, 4, 4, generator=gen, dtype=torch.float64)
        f = torch.einsum("oc,nchw->nohw", w, h) + b.view(1, 6, 1, 1)
        f = f + 0.01 * torch.randn(f.shape, generator=gen, dtype=torch.float64)
        moments.append(Moments(5, 6).add(h, f))
    ridge = choose_ridge(*moments)
    assert ridge == 1e-4  # almost noiseless: the weakest ridge predicts held-out data best
    weight, bias = (moments[0] + moments[1]).solve(ridge)
    assert torch.allclose(weight, w, atol=1e-3) and torch.allclose(bias, b, atol=1e-3)
    assert moments[1].r2(weight, bias).min() > 0.999 and moments[1].pooled_r2(weight, bias) > 0.999
    # a sampled subset of positions (and a mask) gives the same map
    h = torch.randn(30, 5, 6, 6, generator=gen, dtype=torch.float64)
    f = torch.einsum("oc,nchw->nohw", w, h) + b.view(1, 6, 1, 1)
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[0] = False
    sub = Moments(5, 6).add(h, f, mask, positions=8, gen=gen)
    assert sub.count == 30 * 8
    assert torch.allclose(sub.solve(1e-8)[0], w, atol=1e-5)


def _planted_model(size=17):
    """One conv layer: channel 0 a vertically symmetric filter (invariant to vflip: M_g row = identity),
    channels 1 and 2 a filter and its vertical mirror (swapped by vflip: M_g rows permuted)."""
    from cnnscope.models import Model
    from cnnscope.models.preprocess import Preprocess

    torch.manual_seed(1)
    k = torch.randn(3, 3, 3)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[0] = (k + k.flip(-2)) / 2
        conv.weight[1] = k
        conv.weight[2] = k.flip(-2)
    net = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    return Model("planted", net.eval().requires_grad_(False),
                 Preprocess(input_size=size, resize=None, mean=(0.5,) * 3, std=(0.25,) * 3), ["a", "b"])


def test_fitted_map_recovers_a_planted_permutation_and_scores_invariance():
    from cnnscope.transforms.equivariance import fit_layer, invariance_scores, random_orthogonal

    model = _planted_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(60, 3, 17, 17, generator=gen)
    fit = fit_layer(model, "0", Transform.parse("vflip"), x[:40], x[40:], (None, None), crops=0, seed=0)
    w = fit.learned.conv.weight[:, :, 0, 0].detach()
    planted = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert torch.allclose(w, planted, atol=0.02), w
    assert fit.test_moments.pooled_r2(w.double(), fit.learned.conv.bias.detach().double()) > 0.999
    scores, null = fit.invariance(seed=0)
    assert scores[0] > 0.95  # the identity row: invariant
    assert scores[1] < 0.05 and scores[2] < 0.05  # permuted rows: equivariant, not invariant
    # the null: a random orthogonal map of a realistic width keeps almost nothing on its own channels
    wide = invariance_scores(random_orthogonal(64, 0), torch.ones(64), torch.ones(64))
    assert wide.mean() < 0.05 and (wide >= 0.5).sum() == 0
    assert fit.permutation.conv.weight[:, :, 0, 0].equal(planted)
