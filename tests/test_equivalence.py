import json

import numpy as np
import pytest
import torch

from cnnscope import CnnscopeError, load_image, load_model
from cnnscope.transforms.cka import linear_cka
from cnnscope.transforms.equivalence import (
    RestOfNetwork,
    check_grids,
    features,
    fit_permutation,
    fit_regression,
    identity_stitch,
    predict_through,
)
from cnnscope.transforms.smallnets import make_dataset, train_small


def test_cka_golden_values():
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    x, y = torch.tensor(x), torch.tensor(y)
    assert linear_cka(x, y) == pytest.approx(0.55761, abs=5e-6)
    assert linear_cka(x, y, debiased=True) == pytest.approx(0.51346, abs=5e-6)
    q, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    assert linear_cka(x, x @ q) == pytest.approx(1.0) and linear_cka(x, x @ q, True) == pytest.approx(1.0)
    assert linear_cka(x, 3 * x + 0) == pytest.approx(1.0)
    # what the CKA job keeps of a layer: its N x N Gram matrix (the features are dropped once it is made)
    from cnnscope.transforms.cka import cka_of_grams, example_gram

    kx, ky = example_gram(x.reshape(100, 2, 5)), example_gram(y)
    assert cka_of_grams(kx, ky) == pytest.approx(0.55761, abs=5e-6)
    assert cka_of_grams(kx, ky, debiased=True) == pytest.approx(0.51346, abs=5e-6)


def test_regression_recovers_planted_map():
    torch.manual_seed(0)
    fa = torch.randn(6, 5, 7, 7)
    w, b = torch.randn(4, 5), torch.randn(4)
    fb = torch.einsum("oc,nchw->nohw", w, fa) + b.view(1, 4, 1, 1)
    s = fit_regression(fa, fb, ridge=0.0)
    assert torch.allclose(s.conv.weight[:, :, 0, 0], w, atol=1e-4) and torch.allclose(s.conv.bias, b, atol=1e-4)
    perm = torch.randperm(5)
    p = fit_permutation(fa, fa[:, perm])
    assert torch.equal(p.conv.weight[:, :, 0, 0], torch.eye(5)[perm])


def test_grids_must_match_unless_resampled():
    with pytest.raises(CnnscopeError, match=r"grids differ: A gives \(7, 7\), B expects \(14, 14\); pass resample"):
        check_grids(torch.zeros(1, 3, 7, 7), torch.zeros(1, 3, 14, 14), resample=False)
    s = fit_regression(torch.randn(2, 3, 7, 7), torch.randn(2, 4, 14, 14), resample=True)
    assert s(torch.randn(1, 3, 7, 7)).shape == (1, 4, 14, 14)


@pytest.mark.parametrize("layer", ["stem", "stage2", "stage5"])
def test_identity_stitch_a_to_a_keeps_predictions(lite0, layer):
    x = torch.cat([lite0.prepare(load_image(f"sample:{n}")) for n in ("chelsea", "coffee")])
    fa = features(lite0, layer, x)
    logits = predict_through(RestOfNetwork(lite0, layer), identity_stitch(fa, fa), fa)
    with torch.no_grad():
        ref = lite0.net(x)
    assert torch.allclose(logits, ref, atol=1e-4)


def test_small_nets_train_and_datasets_are_deterministic():
    a, la = make_dataset("shapes", 20, seed=5)
    b, lb = make_dataset("shapes", 20, seed=5)
    assert torch.equal(a, b) and torch.equal(la, lb) and a.shape == (20, 3, 32, 32)
    net, info = train_small("textures", 0, epochs=1, n_train=800, n_test=200, progress=False)
    assert info["test_accuracy"] > 0.3  # 10 classes: chance is 0.1


def test_cli_stitch_cka_and_small(tmp_path):
    from cnnscope.cli import main

    assert main(["stitch", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "stitch_efficientnet_lite0_efficientnet_lite1.json").read_text())
    assert [r["layer"] for r in data["table"]][2:] == ["stem", "stage2"]
    from safetensors.torch import load_file

    stitches = load_file(str(tmp_path / "stitch_efficientnet_lite0_efficientnet_lite1_stitches.safetensors"))
    assert stitches["stage2|stage2|regression|conv.weight"].shape == (24, 24, 1, 1)  # Lite0 -> Lite1: 24 channels
    assert main(["stitch", "--quick", "--layers", "stage2", "--kernel", "3", "--batchnorm",
                 "--out", str(tmp_path / "k3")]) == 0
    k3 = json.loads((tmp_path / "k3" / "stitch_efficientnet_lite0_efficientnet_lite1.json").read_text())
    row = k3["rows"][0]
    assert row["regression"]["disagreement_with_b"] < row["random"]["disagreement_with_b"]
    k3_stitches = load_file(str(tmp_path / "k3" / "stitch_efficientnet_lite0_efficientnet_lite1_stitches.safetensors"))
    assert k3_stitches["stage2|stage2|task|conv.weight"].shape == (24, 24, 3, 3)  # --kernel 3
    assert "stage2|stage2|task|bn.running_mean" in k3_stitches  # --batchnorm
    assert main(["cka", "--layers", "stem,stage3", "--limit", "6", "--out", str(tmp_path)]) == 0
    cka = json.loads((tmp_path / "cka_efficientnet_lite0_efficientnet_lite1.json").read_text())["results"]["cka"]
    assert cka[0][0] > cka[0][1] and cka[1][1] > cka[1][0]  # each layer is most like its namesake
    # an independent reference: HSIC in Gram form, tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)), on the same crops
    from cnnscope.data import image_set
    from cnnscope.transforms.equivalence import features

    a, b = load_model("efficientnet_lite0"), load_model("efficientnet_lite1")
    images, _ = image_set(a, None, 6, 0)
    fa = features(a, "stage3", a.preprocess.normalize(images)).flatten(1).double()
    fb = features(b, "stem", b.preprocess.normalize(images)).flatten(1).double()
    h = torch.eye(6, dtype=torch.double) - 1 / 6
    k, l_ = h @ fa @ fa.T @ h, h @ fb @ fb.T @ h
    reference = float((k * l_).sum() / ((k * k).sum() * (l_ * l_).sum()).sqrt())
    assert abs(cka[1][0] - reference) < 1e-4
    net = tmp_path / "s.safetensors"
    assert main(["train-small", "--data", "shapes", "--epochs", "1", "--out", str(net)]) == 0
    model = load_model(f"small:{net}")
    assert model.input_size == 32 and model.aliases["block4"] == "relu4"


def test_streamed_features_give_the_same_stitches_as_kept_ones():
    """Stitching streams A's and B's features a chunk at a time (memory flat in the number of pictures): the
    regression and permutation maps, and B's output through them, equal those fitted on every feature kept."""
    from cnnscope.data import image_set
    from cnnscope.models.folding import for_optimisation
    from cnnscope.transforms.equivalence import StreamedFeatures

    a, b = load_model("efficientnet_lite0"), load_model("efficientnet_lite1")
    x, _ = image_set(a, None, 40, 0)  # 40 pictures: the chunks (16) and the held-back fifth (8) do not align
    # the streamed passes run with the BatchNorms folded: the same features to float precision
    plain = features(b, "stage3", b.preprocess.normalize(x[5:9]))
    kept = [features(f, "stage3", f.preprocess.normalize(x)) for f in (for_optimisation(m, ["stage3"]) for m in (a, b))]
    assert (kept[1][5:9] - plain).abs().max() < 1e-4 * plain.abs().max()
    streamed = [StreamedFeatures.at(m, "stage3", x) for m in (a, b)]
    assert streamed[0].shape == kept[0].shape and torch.allclose(streamed[1][5:9], kept[1][5:9], atol=1e-4)
    for fit in (lambda fa, fb: fit_regression(fa, fb, kernel=3), fit_permutation):
        one, other = fit(*kept), fit(*streamed)
        assert torch.allclose(one.conv.weight, other.conv.weight, atol=1e-5)
        assert getattr(one, "ridge", None) == getattr(other, "ridge", None)
    rest = RestOfNetwork(b, "stage3")
    reg = fit_regression(*streamed)
    assert torch.allclose(predict_through(rest, reg, kept[0]), predict_through(rest, reg, streamed[0]), atol=1e-4)
