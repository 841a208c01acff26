"""Hand-crafted representations: HOG (VLFeat parity, exact flip symmetry, gradients), DSIFT, glyphs, and the
equivariance of HOG by regularised regression."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnnscope import load_image
from cnnscope.data import image_set
from cnnscope.features import HOG, DenseSIFT, render_hog, vlfeat
from cnnscope.layers import get_layer
from cnnscope.models import load_model
from cnnscope.transforms.regression import apply_map, fit_map, regression_experiment
from cnnscope.transforms.transform import Transform

needs_vlfeat = pytest.mark.skipif(not vlfeat.available(),
                                  reason="libvlfeat not installed (apt-get install libvlfeat1; .ci/run does)")


@needs_vlfeat
@pytest.mark.parametrize("cell_size", [8, 5])
def test_hog_matches_vlfeat_hard_binning(cell_size):
    img = load_image("sample:chelsea")[:, 40:203, 60:250]  # odd sizes: partial border cells
    ref = vlfeat.vl_hog(img.numpy(), cell_size, 9, bilinear=False)
    ours = HOG(cell_size, 9, bilinear=False)(img[None])[0].numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5


@needs_vlfeat
def test_hog_matches_vlfeat_bilinear_binning():
    img = load_image("sample:astronaut")[:, :160, :128]
    ref = vlfeat.vl_hog(img.numpy(), 8, 9, bilinear=True)
    # float32 as VLFeat: colour channels whose gradients tie in exact arithmetic are told apart by rounding
    ours = HOG(8, 9, bilinear=True)(img[None])[0].numpy()
    # VLFeat gets the angle as acosf(cos): float32 acos near 1 loses ~3e-4 rad, hence the looser bound
    assert np.abs(ours - ref).max() < 3e-4
    assert np.abs(ours - ref).mean() < 1e-5


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("kind", ["hflip", "vflip", "rot180"])
def test_hog_of_flipped_image_is_permuted_flipped_hog(kind, bilinear):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 64, dtype=torch.float64)  # sides multiples of the cell: the grid maps onto itself
    hog = HOG(8, 9, bilinear)
    t = Transform(kind)
    expected = t.image(hog(x))[:, hog.flip_permutation(kind)]
    assert torch.allclose(hog(t.image(x)), expected, atol=1e-12)


def test_hogb_flip_is_exact_on_a_real_image():
    # real 8-bit images have exactly vertical gradients, which sit on a bin boundary when O is odd:
    # hard binning breaks that tie one way (as VLFeat does), bilinear binning splits it evenly
    x = load_image("sample:camera")[None, :, :128, :128].double()
    hog = HOG(8, 9, bilinear=True)
    expected = hog(x).flip(-1)[:, hog.flip_permutation("hflip")]
    assert torch.allclose(hog(x.flip(-1)), expected, atol=1e-12)


@pytest.mark.parametrize("bilinear", [False, True])
def test_hog_gradcheck(bilinear):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(HOG(4, 9, bilinear), (x,), eps=1e-6, atol=1e-5)


def test_dsift_gradcheck_and_shape():
    torch.manual_seed(2)
    x = torch.rand(1, 3, 14, 14, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(DenseSIFT(bin_size=2, step=2), (x,), eps=1e-6, atol=1e-5)
    d = DenseSIFT()(torch.rand(2, 3, 64, 64))
    assert d.shape == (2, 128, 7, 7)
    assert torch.allclose(d.norm(dim=1), torch.ones(2, 7, 7), atol=1e-5)  # normalised descriptors
    assert float(d.max()) <= 0.2 / 0.2 + 1e-6


def test_hog_orientation_and_glyphs():
    x = torch.zeros(1, 1, 32, 32)
    x[..., :, 16:] = 1.0  # a vertical edge: gradient along +x, orientation bin 0
    f = HOG(8)(x)[0]
    col = f[:, :, 1:3].sum((1, 2))  # cells next to the edge
    assert int(col[:18].argmax()) == 0 and int(col[18:27].argmax()) == 0
    glyphs = render_hog(f, 9, 9)
    assert glyphs.shape == (36, 36) and glyphs.max() == 1.0
    # the stroke along the edge is vertical: in the edge cells a column of the glyph lights up, not a row
    cell = glyphs[9:18, 18:27]
    assert cell[:, 4].min() > 0.5 and cell[4, :].sum() < cell[:, 4].sum()


def test_hog_geometry_in_layer_table():
    info = get_layer(load_model("hog:4"), "hog")
    assert info.shape == (31, 56, 56) and info.stride == (4, 4)
    assert get_layer(load_model("dsift"), "dsift").stride == (4, 4)


def test_regression_recovers_a_planted_map():
    torch.manual_seed(3)
    src = torch.randn(6, 5, 10, 10)
    weight, bias = torch.randn(5, 5, 3, 3) * 0.3, torch.randn(5)
    target = apply_map(weight, bias, src)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[1:-1, 1:-1] = True  # the border sees zero padding: leave it out as the experiment does
    w_hat, b_hat = fit_map(src, target, mask, neighbourhood=3, ridge=1e-8)
    assert torch.allclose(w_hat, weight, atol=1e-4) and torch.allclose(b_hat, bias, atol=1e-4)


def _hog_images(n=16):
    model = load_model("hog")
    images, _ = image_set(model, None, n, seed=0)
    return model, images


def test_hog_rot180_map_is_the_permutation_and_rotation_45_is_compensated():
    model, images = _hog_images()
    hog = model.net.hog
    geometry = get_layer(model, "hog").geometry

    def phi(x):
        return hog(x)

    r = regression_experiment(phi, geometry, Transform("rot180"), images[:12], images[12:], (1,), 1e-6)
    w = r["maps"]["learned_1x1"][0][:, :, 0, 0]
    assert torch.equal(w.argmax(1), hog.flip_permutation("rot180"))
    assert r["errors"]["learned_1x1"] < 1e-3 < r["errors"]["spatial_only"]
    r45 = regression_experiment(phi, geometry, Transform("rotate", angle=45), images[:12], images[12:], (1, 3), 1e-4)
    e = r45["errors"]
    assert e["learned_3x3"] < 0.6 * e["spatial_only"] and e["spatial_only"] < e["uncompensated"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "cnnscope", *args], capture_output=True, text=True, timeout=600)


def test_cli_hog_inversion_and_glyphs(tmp_path):
    res = run("invert", "sample:chelsea", "--model", "hogb", "--size", "96", "--iters", "150",  # its one layer
              "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "invert_hogb_chelsea_hog.json").read_text())
    assert meta["results"]["normalised_error"][0] < 0.05  # noise starts at ~0.4: the optimisation converged
    assert meta["settings"]["recipe"]["name"] == "mv"  # HOGb: M&V's recipe stays the hand-crafted default
    res = run("hog", "sample:coffee", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    record = json.loads((tmp_path / "hog_coffee.json").read_text())
    assert record["results"]["features_shape"] == [31, 400 // 8, 600 // 8]  # coffee is 600x400; 8 px cells
    glyphs = np.asarray(Image.open(tmp_path / "hog_coffee.png"))
    assert glyphs.shape == (50 * 15, 75 * 15, 3) and glyphs.max() == 255 and glyphs.min() == 0  # 15 px glyphs


def test_a_hog_channel_is_maximised_at_its_one_layer_without_naming_it(tmp_path):
    res = run("maximize", "--model", "hog", "--channel", "3", "--iters", "30", "--size", "64", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    unit = json.loads((tmp_path / "maximize_hog_hog_neuron3.json").read_text())
    assert unit["results"]["final_activation"][0] > unit["results"]["start_activation"][0]
    res = run("maximize", "--channel", "3", "--out", str(tmp_path / "cnn"))  # a CNN's layer must be named
    assert res.returncode == 2 and "--layer is required" in res.stderr


def test_cli_hog_equivariance(tmp_path):
    res = run("equivariance", "--model", "hog", "--transform", "rotate:45", "--quick", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    record = json.loads((tmp_path / "equivariance_hog_rotate45.json").read_text())
    e = record["results"]["relative_error"]
    assert e["learned_3x3"] < e["spatial_only"] < e["uncompensated"]
    for suffix in (".csv", ".png", "_maps.safetensors"):
        assert (tmp_path / f"equivariance_hog_rotate45{suffix}").is_file()
