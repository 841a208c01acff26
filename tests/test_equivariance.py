import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnscope import CnnscopeError
from cnnscope.data import image_set
from cnnscope.transforms.equivariance import EquivarianceFit, channel_correlation, equivariance_experiment
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
    r = equivariance_experiment(lite0, ["stage2"], Transform("identity"), images[:4], images[4:],
                                how=EquivarianceFit(task_epochs=1, progress=False))
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
    for row, c in zip(data["rows"], (32, 24)):  # the m x m map the task chose (identity: the spatial inverse)
        m = row["kernel"]
        assert maps[f"{row['layer']}|conv.weight"].shape == (c, c, m, m) and m in (1, 3)
        chosen = "identity" if row["ridge"] is None else f"{m}x{m} ridge {row['ridge']:g}"
        assert row["validation"][chosen] == min(row["validation"].values())  # never worse than the identity there
        assert row["validation"][chosen] <= row["validation"]["identity"]
    assert json.loads(meta["settings"])["transform"] == "hflip"
    assert main(["equivariance", "--transform", "shear", "--out", str(tmp_path)]) == 2


# ------------------------------------------------------------------- closed-form M_g: planted maps
def test_moments_ridge_recovers_a_planted_linear_map():
    from cnnscope.transforms.ridge import Moments, choose_ridge

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
    assert fit.kernel == 1  # a planted channel map: 3x3 explains nothing more, and the simpler map wins the tie
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


# ------------------------------------------------------------------ M_g with spatial support (issue 28)
def test_streamed_m_by_m_ridge_equals_a_direct_least_squares_reference():
    from cnnscope.transforms.ridge import Moments

    gen = torch.Generator().manual_seed(0)
    h, f = torch.randn(6, 4, 7, 7, generator=gen), torch.randn(6, 3, 7, 7, generator=gen)
    m = Moments(4, 3, kernel=3)
    for i in range(0, 6, 2):  # streamed in chunks
        m.add(h[i:i + 2], f[i:i + 2])
    weight, bias = m.solve(0.0)
    design = F.unfold(h.double(), 3, padding=1).transpose(1, 2).reshape(-1, 36)
    design = torch.cat([design, torch.ones(len(design), 1, dtype=torch.float64)], 1)
    target = f.double().permute(0, 2, 3, 1).reshape(-1, 3)
    ref = torch.linalg.lstsq(design, target).solution
    assert torch.allclose(weight, ref[:-1].T, atol=1e-8) and torch.allclose(bias, ref[-1], atol=1e-8)
    conv = F.conv2d(h.double(), m.as_conv(weight), bias, padding=1)  # the layout is a conv weight's
    assert torch.allclose(conv.permute(0, 2, 3, 1).reshape(-1, 3), design @ ref, atol=1e-8)
    from cnnscope.transforms.equivariance import fit_bytes, supports

    gb = 1024 ** 3
    assert Moments.nbytes(1280, 1280, 5) > 7 * gb  # a dense 5x5 at a 1280-channel head: 7.6 GB of sums
    assert Moments.nbytes(1280, 1280, 5, reduced=128) < 0.2 * gb  # reduced to 128 directions off-centre
    # one budget: the widest supports whose whole fit (sums and their curve copies, a solve's two copies, the maps, the
    # passes) fits are kept; the head's 3x3 and 5x5 maps are reduced
    assert 1.1 * gb < fit_bytes(1280, [1, 3]) < 1.5 * gb
    assert supports(1280, (1, 3, 5), budget=8 * gb)[0] == [1, 3, 5]
    kept, skipped = supports(1280, (1, 3, 5), budget=1.2 * gb)
    assert kept == [1] and "5x5 left out" in skipped[0] and "3x3 left out" in skipped[1]
    assert supports(1280, (1, 3), budget=0.1 * gb)[0] == []


def test_a_sub_cell_shift_is_recovered_by_3x3_and_not_by_1x1():
    from cnnscope.transforms.ridge import Moments

    gen = torch.Generator().manual_seed(1)
    h = torch.randn(20, 6, 12, 12, generator=gen)
    mix = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    # the target sits half a cell to the right and mixes channels: a 3x3 map holds it exactly, a 1x1 map cannot
    shifted = 0.5 * h + 0.5 * torch.roll(h, -1, dims=-1)
    f = torch.einsum("oc,nchw->nohw", mix, shifted.double()).float()
    inside = torch.ones(12, 12, dtype=torch.bool)
    inside[:, -1] = False  # (the roll wraps around at the border)
    r2 = {}
    for k in (1, 3):
        m = Moments(6, 6, kernel=k).add(h, f, inside)
        r2[k] = m.pooled_r2(*m.solve(1e-6))
    assert r2[3] > 0.9999 and r2[1] < 0.9


def test_neighbourhood_changes_the_map_of_a_cnn_layer():
    import cnnscope

    one = cnnscope.equivariance("efficientnet_lite0", "stage3", "vflip", limit=15, neighbourhood=[1])
    both = cnnscope.equivariance("efficientnet_lite0", "stage3", "vflip", limit=15, neighbourhood=[1, 3])
    assert set(one.row["validation"]) == {"identity", "1x1 ridge 0.01", "1x1 ridge 0.1", "1x1 ridge 1"}
    assert {k for k in both.row["validation"] if k.startswith("3x3")} and one.row["kernel"] == 1
    assert both.row["validation"] != one.row["validation"]
    # data or network: the best learned map's held-back error with half, three quarters and all the fit images
    # (the last is its validation score), and how many fit positions each map parameter has
    curve = both.row["learning_curve"]
    best = min((k for k in both.row["validation"] if k != "identity"), key=both.row["validation"].__getitem__)
    assert set(curve) == {"50%", "75%", "100%"} and curve["100%"] == both.row["validation"][best]
    assert all(0 <= v <= 1 for v in curve.values()) and both.row["curve"] in ("falling", "flat")
    m = both.row["kernel"]
    assert both.row["positions_per_parameter"] == round(both.row["fit_positions"] / (40 * m * m + 1), 2)


def test_a_falling_learning_curve_means_more_images_would_help():
    from cnnscope.transforms.equivariance import curve_trend

    assert curve_trend({"50%": 0.5, "75%": 0.4, "100%": 0.3}, held_back=10) == "falling"  # two pictures better
    assert curve_trend({"50%": 0.4, "75%": 0.3, "100%": 0.3}, held_back=10) == "flat"  # one picture: noise
    assert curve_trend({"50%": 0.3, "75%": 0.3, "100%": 0.4}, held_back=10) == "flat"
    assert curve_trend(None, held_back=10) is None


def test_a_layer_without_a_spatial_map_is_refused_before_any_job_runs(lite0, tmp_path):
    """Equivariance and stitching transform feature maps: logits are refused up front (a run used to compute
    every other layer and then fail), 'stages' means the row's maps, and the report analyses only its maps."""
    from cnnscope.cli import main
    from cnnscope.layers import expand_layers
    from cnnscope.report.atlas import ReportSettings, plan
    from cnnscope.transforms.jobs import EquivarianceJob, StitchJob
    from cnnscope.transforms.plans import plan_equivariance, plan_stitch

    with pytest.raises(CnnscopeError, match="logits has no spatial grid"):
        plan_equivariance(lite0, ["stem", "logits"], "vflip")
    with pytest.raises(CnnscopeError, match="stitching needs convolutional layers.*logits:logits"):
        plan_stitch(lite0, lite0, [("stem", "stem"), ("logits", "logits")])
    assert "logits" in expand_layers(lite0, "stages")
    assert expand_layers(lite0, "stages", maps_only=True) == [n for n in lite0.profile.depth if n != "logits"]

    for args in (["equivariance", "--layers", "stem,logits"], ["stitch", "--a", "efficientnet_lite0", "--b",
                                                                  "efficientnet_lite1", "--layers", "stem,logits"]):
        out = tmp_path / args[0]
        assert main([*args, "--limit", "4", "--out", str(out)]) == 2
        assert not out.exists()  # nothing computed, nothing written

    report = ReportSettings(model="efficientnet_lite0", layers=("stem", "logits"), channels=1, iters=2, size=64,
                            examples=1, patch_images=2, equivariance="vflip", stitch_with="efficientnet_lite1")
    jobs = plan(report, lite0)
    assert [j.layer for j in jobs if isinstance(j, EquivarianceJob)] == ["stem"]
    assert [(j.layer_a, j.layer_b) for j in jobs if isinstance(j, StitchJob)] == [("stem", "stem")]


def _peak_rss(args: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run `cnnscope ARGS` as the only child of a fresh Python, and its peak resident set in bytes."""
    code = ("import json, resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, "
            "text=True); print(json.dumps([p.returncode, p.stdout, p.stderr, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))")
    cli = str(Path(sys.executable).with_name("cnnscope"))
    done = subprocess.run([sys.executable, "-c", code, cli, *args], capture_output=True, text=True, check=True)
    rc, out, err, peak = json.loads(done.stdout)
    return subprocess.CompletedProcess(args, rc, out, err), peak


def test_the_memory_budget_bounds_the_widest_fit_measured_in_a_child(tmp_path):
    """At Lite0's head (1280 channels) the reduced 5x5 map's fit needs about 3.1 GB: under --max-memory 2.5 it is
    left out, the row says so, the reduced 3x3 is fitted, and the process's measured peak stays within the budget;
    under 0.4 not even the 1x1 map fits, and the run refuses in one line, saying what would fit, before any job (no
    folder is made)."""
    run, peak = _peak_rss(["equivariance", "--layers", "head", "--transform", "vflip", "--limit", "8",
                           "--neighbourhood", "1,3,5", "--max-memory", "2.5", "--json", "-q", "--out",
                           str(tmp_path / "fits")])
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout)["rows"][0]
    assert len(row["skipped"]) == 1 and "5x5 left out" in row["skipped"][0] and "2.5 GB" in row["skipped"][0]
    assert "3x3 ridge 0.1" in row["validation"] and "5x5 ridge 0.1" not in row["validation"]
    assert peak < 2.5 * 1024 ** 3, peak / 1024 ** 3
    run, _ = _peak_rss(["equivariance", "--layers", "head", "--transform", "vflip", "--limit", "8",
                        "--max-memory", "0.4", "--out", str(tmp_path / "refused")])
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "no map fits the memory budget at head" in run.stderr and "would fit" in run.stderr
    assert not (tmp_path / "refused").exists()


def test_the_reduced_map_agrees_with_the_dense_ridge_on_a_layer_where_both_fit():
    """At Lite0's stage6 (192 channels, a dense 3x3 map of 1,728 inputs fits easily) the reduced map — every
    channel at the centre tap, K principal directions at the other taps — is the dense ridge solution when K = C
    (any orthonormal basis), and with K = 96 (960 inputs) explains as much of the held-out images' features."""
    from cnnscope.data import image_set
    from cnnscope.models import load_model
    from cnnscope.transforms.equivariance import _Pairs, principal_directions, random_orthogonal
    from cnnscope.transforms.ridge import Moments
    from cnnscope.transforms.transform import Transform

    model = load_model("efficientnet_lite0")
    x, _ = image_set(model, None, 32, 0)
    pairs = _Pairs(model, "stage6", Transform.parse("vflip"))
    assert principal_directions(pairs, x[:24], 192) is None  # not wider than K: the map stays dense
    bases = {"dense": None, "rotated": random_orthogonal(192, 1), "reduced": principal_directions(pairs, x[:24], 96)}
    sums = {k: (Moments(192, 192, 3, b), Moments(192, 192, 3, b)) for k, b in bases.items()}
    for i in range(0, 24, 8):
        f, h = pairs(x[i:i + 8])
        for fit, _ in sums.values():
            fit.add(h, f, pairs.mask)
    f, h = pairs(x[24:])
    for _, test in sums.values():
        test.add(h, f, pairs.mask)
    assert sums["reduced"][0].inputs == 192 + 8 * 96
    solved = {k: fit.solve(0.1, towards_identity=True) for k, (fit, _) in sums.items()}
    for w, b in zip(solved["rotated"], solved["dense"]):
        assert torch.allclose(w, b, atol=1e-9)
    r2 = {k: sums[k][1].pooled_r2(*solved[k]) for k in sums}
    assert r2["dense"] > 0.5 and abs(r2["reduced"] - r2["dense"]) < 0.01, r2
    # the weights come back in the full conv layout: the reduced map's conv reproduces its own sums' error
    dense_test = sums["dense"][1]
    assert dense_test.pooled_r2(*solved["reduced"]) == pytest.approx(r2["reduced"], abs=1e-9)


def test_joint_fits_share_the_passes_and_equal_one_at_a_time(lite0, monkeypatch):
    """`fit_layers` fills every (layer, transform)'s sums from the same passes of the network (the transforms share
    Phi(x)); what it fits is what fitting each alone gives, bit for bit, with a quarter of the passes here."""
    from cnnscope.data import image_set
    from cnnscope.transforms import equivariance as eq

    x, _ = image_set(lite0, None, 14, 0)
    passes = []
    views_call = eq._Views.__call__
    monkeypatch.setattr(eq._Views, "__call__", lambda self, images: passes.append(len(self.pairs))
                        or views_call(self, images))
    transforms = [Transform.parse("hflip"), Transform.parse("vflip")]
    joint = eq.fit_layers(lite0, ["stem", "stage2"], transforms, x[:10], x[10:], crops=0, seed=3)
    together = len(passes)
    # the memory budget holding one (layer, transform) at a time: four groups, four times the passes
    monkeypatch.setattr(eq, "joint_bytes", lambda channels, kernels: 2 ** 62 if len(channels) > 1 else 0)
    passes.clear()
    alone = eq.fit_layers(lite0, ["stem", "stage2"], transforms, x[:10], x[10:], crops=0, seed=3)
    assert set(passes) == {1} and len(passes) == 4 * together
    assert sorted(joint) == sorted(alone) == [(layer, t) for layer in ("stage2", "stem") for t in ("hflip", "vflip")]
    for key in joint:
        a, b = joint[key], alone[key]
        assert (a.kernel, a.ridge, a.validation) == (b.kernel, b.ridge, b.validation)
        assert torch.equal(a.learned.conv.weight, b.learned.conv.weight)
        assert torch.equal(a.fit_moments.xx, b.fit_moments.xx) and torch.equal(a.test_moments.xy, b.test_moments.xy)
    # and the single-layer door gives the same fit
    one = eq.fit_layer(lite0, "stage2", transforms[1], x[:10], x[10:], (None, None), crops=0, seed=3)
    assert torch.equal(one.learned.conv.weight, joint["stage2", "vflip"].learned.conv.weight)
