import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cnnscope import CnnscopeError, capture, load_image, load_model
from cnnscope.preimage import (
    B_PLUS,
    TV,
    AlphaNorm,
    Caricature,
    Context,
    InnerProduct,
    Prior,
    Representation,
    SolverConfig,
    Target,
    ambiguity,
    caricature,
    invert,
    maximize,
    reconstruction_error,
    solve,
)
from cnnscope.preimage.objectives import Term, unit_direction

QUICK = dict(progress=False)


def ctx(x):
    return Context(x, {})


def test_tv_and_alpha_hand_computed():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[0.0, 3.0], [4.0, 0.0]])
    # pixel (0,0): dh=4, dw=3 -> 25; (0,1): dh=-3 -> 9; (1,0): dw=-4 -> 16; (1,1): 0. Mean over 4 pixels.
    assert TV(beta=2, v=1).value(ctx(x)).item() == pytest.approx((25 + 9 + 16) / 4)
    assert TV(beta=1, v=1).value(ctx(x)).item() == pytest.approx((5 + 3 + 4) / 4, abs=1e-4)  # eps at flat pixels
    assert TV(beta=2, v=2).value(ctx(x)).item() == pytest.approx((25 + 9 + 16) / 4 / 4)
    y = torch.zeros(1, 3, 1, 2)
    y[0, :, 0, 0] = torch.tensor([1.0, 2.0, 2.0])  # norm 3
    assert AlphaNorm(alpha=6, b=3).value(ctx(y)).item() == pytest.approx((1 + 0) / 2)
    assert AlphaNorm(alpha=2, b=1).value(ctx(y)).item() == pytest.approx(9 / 2)


@pytest.mark.parametrize("term", [TV(beta=2), TV(beta=1), TV(beta=1.5), AlphaNorm(alpha=6), AlphaNorm(alpha=3)])
def test_regulariser_gradients(term):
    x = (torch.randn(2, 3, 5, 6, dtype=torch.double) * 30).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: term.value(ctx(t)), (x,), eps=1e-4, atol=1e-5)


def test_objective_algebra():
    x = torch.randn(2, 3, 4, 4) * 20
    tv, a = TV(), AlphaNorm()
    obj = 2.0 * tv + a - 0.5 * tv
    parts = obj.breakdown(ctx(x))
    assert list(parts) == ["tv2", "alpha6"]  # one term object, one value (its weights summed)
    assert torch.allclose(obj.by_term(ctx(x))[tv], 1.5 * tv.value(ctx(x)))
    assert list((obj + TV()).breakdown(ctx(x))) == ["tv2", "alpha6", "tv2#2"]  # another TV object: its own row
    expected = 1.5 * tv.value(ctx(x)) + a.value(ctx(x))
    assert torch.allclose(obj(ctx(x)), expected)
    assert torch.allclose(sum(parts.values()), expected)


def test_data_terms():
    target = torch.randn(1, 4, 3, 3)
    feats = {"L": target * 2}
    c = Context(torch.zeros(1, 3, 8, 8), feats)
    assert Representation("L", target).value(c).item() == pytest.approx(1.0)  # ||2t - t||^2 / ||t||^2
    assert Representation("L", target, window=(0, 1, 0, 1)).value(c).item() == pytest.approx(1.0)
    assert Caricature("L", target).value(c).item() == pytest.approx(-2.0)
    w = torch.zeros(1, 4, 3, 3)
    w[0, 2, 1, 1] = 1
    assert InnerProduct("L", w, scale=2.0).value(c).item() == pytest.approx(-target[0, 2, 1, 1].item())


def test_inverting_random_conv_layer_at_stem_depth():
    model = load_model("efficientnet_lite0", random_weights=True, seed=1)
    r = invert(model, "sample:chelsea", "stem", size=96, config=SolverConfig(iters=200, **QUICK), recipe="mv")
    assert reconstruction_error(r)[0] < 0.05
    assert r.iterations == 200 and not r.interrupted


def test_inversion_real_model_and_restarts(lite0):
    r = invert(lite0, "sample:coffee", "stage1", size=128, restarts=2, config=SolverConfig(iters=150, **QUICK),
               recipe="mv")
    errors = reconstruction_error(r)
    assert len(errors) == 2 and max(errors) < 0.25  # short budget at 128 px; coffee has hard edges
    amb = ambiguity(r)
    assert amb["mean_mutual_rms_distance"] > 0  # two different pre-images of one code
    assert not torch.equal(r.images[0], r.images[1])


def test_maximize_raises_activation_tenfold(lite0):
    targets = [Target("channel", 3), Target("channel", 10)]
    r, info = maximize(lite0, "stage2", targets, size=96, config=SolverConfig(iters=150, **QUICK), recipe="mv")
    for start, final in zip(info["start_activation"], info["final_activation"]):
        assert final > 0 and final >= 10 * abs(start), (start, final)


def test_maximize_class_and_bad_channel(lite0):
    r, info = maximize(lite0, "logits", [Target("class", 285)], size=96, config=SolverConfig(iters=60, **QUICK))
    assert info["final_activation"][0] > info["start_activation"][0] + 5
    with pytest.raises(CnnscopeError, match="out of range"):
        maximize(lite0, "stage2", [Target("channel", 500)], size=96, config=SolverConfig(iters=2, **QUICK))


def test_caricature_increases_response(lite0):
    r = caricature(lite0, "sample:chelsea", "stage3", size=128, config=SolverConfig(iters=80, **QUICK), recipe="mv")
    gain = -r.terms["caricature[stage3]"][0] / 20.0
    assert gain > 1.2  # <Phi(x0), Phi(x)> grew past its value at x0 (= ||Phi(x0)||^2)


def test_seed_reproducible_and_bounds(lite0):
    cfg = SolverConfig(iters=20, box=False, **QUICK)
    a = invert(lite0, "sample:chelsea", "stage1", size=64, config=cfg, recipe="mv")  # M&V: pixels, bound B+
    b = invert(lite0, "sample:chelsea", "stage1", size=64, config=cfg, recipe="mv")
    c = invert(lite0, "sample:chelsea", "stage1", size=64, config=SolverConfig(iters=20, box=False, seed=5, **QUICK),
               recipe="mv")
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.x.square().sum(1).sqrt().max() <= B_PLUS + 1e-3


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_other_optimizers_converge(lite0, optimizer):
    r = invert(lite0, "sample:chelsea", "stem", size=64, config=SolverConfig(iters=40, optimizer=optimizer, **QUICK))
    assert r.history[-1] < 0.5 * r.history[0]


class _InterruptAfter(Term):
    label = "interrupt"

    def __init__(self, n):
        super().__init__()
        self.n = n

    def value(self, c):
        self.n -= 1
        if self.n == 0:  # one Ctrl-C, as a user would press it
            raise KeyboardInterrupt
        return torch.zeros(c.x.shape[0])


def test_ctrl_c_keeps_best_so_far(lite0):
    img = lite0.prepare(load_image("sample:chelsea"))[:, :, :64, :64]
    with torch.no_grad():
        phi0 = capture(lite0, img, ["stem"])["stem"]
    obj = 20 * Representation("stem", phi0) + TV() + _InterruptAfter(30)
    r = solve(lite0, obj, torch.randn(1, 3, 64, 64) * 8, SolverConfig(iters=100, **QUICK))
    assert r.interrupted and 25 <= r.iterations < 100
    assert r.energy[0] < r.history[0]  # the best image so far, not the noise start


def test_prior_none_and_auto_jitter(lite0):
    assert Prior.none().objective() == 0
    from cnnscope.preimage.tasks import auto_jitter

    assert auto_jitter(lite0, ["stage2"], 224) == 0 and auto_jitter(lite0, ["stage6"], 224) == 4


def test_cli_invert_writes_outputs_and_resumes(tmp_path):
    from cnnscope.cli import main

    out = tmp_path / "inv"
    args = ["invert", "sample:chelsea", "--layer", "stem,stage1", "--size", "64", "--iters", "30", "--out", str(out)]
    assert main(args) == 0
    meta = json.loads((out / "invert_efficientnet_lite0_chelsea_stem.json").read_text())
    assert meta["settings"]["layers"] == ["stem"] and meta["settings"]["solver"]["iters"] == 30
    assert meta["settings"]["prior"]["beta"] == 2.0 and meta["results"]["iterations"] == 30
    assert 0 <= meta["results"]["normalised_error"][0] < 1
    assert meta["files"] == ["invert_efficientnet_lite0_chelsea_stem.png"]
    summary = json.loads((out / "invert_chelsea_summary.json").read_text())
    assert [u["title"] for u in summary["units"]] == ["stem", "stage1"]
    assert (out / "invert_chelsea_grid.png").stat().st_size > 0
    png = out / "invert_efficientnet_lite0_chelsea_stem.png"
    stamp = png.stat().st_mtime_ns
    assert main(args) == 0  # same settings: finished units are reused, not recomputed
    assert png.stat().st_mtime_ns == stamp
    assert main(args[:-4] + ["--iters", "31", "--out", str(out)]) == 0  # new settings: recomputed
    assert png.stat().st_mtime_ns != stamp


def test_cli_maximize_and_caricature(tmp_path, capsys):
    from cnnscope.cli import main

    assert main(["maximize", "--layer", "stage2", "--channel", "0-1", "--size", "64", "--iters", "20",
                 "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "maximize_summary.json").read_text())
    assert [u["target"] for u in summary["units"]] == ["neuron0", "neuron1"]
    assert main(["maximize", "--class", "Egyptian cat", "--size", "64", "--iters", "10", "--out", str(tmp_path)]) == 0
    assert main(["caricature", "sample:coffee", "--layer", "stage2", "--size", "64", "--iters", "10",
                 "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "caricature_coffee_summary.json").read_text())
    assert summary["units"][0]["relative_response"] > 1.0  # 1 at the input: the caricature raised it
    assert main(["maximize", "--class", "Egyptian kat", "--out", str(tmp_path)]) == 2
    assert "closest: Egyptian cat" in capsys.readouterr().err


def test_restart_figure_reports_ambiguity(tmp_path):
    from cnnscope.cli import main

    assert main(["invert", "sample:coffee", "--layer", "stage2", "--restarts", "2", "--size", "64", "--iters", "20",
                 "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "invert_efficientnet_lite0_coffee_stage2.json").read_text())
    assert len(meta["files"]) == 2 and len(meta["results"]["ambiguity"]["rms_distance_to_original"]) == 2
    assert math.isfinite(meta["results"]["ambiguity"]["mean_mutual_rms_distance"])


def test_a_units_inner_product_reads_only_its_channels_and_equals_the_dense_one():

    feats = torch.randn(2, 6, 5, 5, requires_grad=True)
    direction = unit_direction((6, 5, 5), [1, 4], "channel")
    term = InnerProduct("l", direction)
    assert term.channels.tolist() == [1, 4]
    value = term.value(Context(None, {"l": feats}))
    dense = -(feats.flatten(1) * direction.flatten(1)).sum(1)
    assert torch.allclose(value, dense, atol=1e-6)
    g, g_dense = (torch.autograd.grad(v.sum(), feats)[0] for v in (value, dense))
    assert torch.allclose(g, g_dense)
    assert InnerProduct("l", torch.randn(1, 6, 5, 5)).channels is None  # a dense direction stays dense


def test_selecting_channels_keeps_the_maps_layout_and_its_gradient_is_exact():
    from cnnscope.preimage.objectives import SelectChannels

    f = torch.randn(2, 6, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    channels = torch.tensor([4, 1])
    assert torch.autograd.gradcheck(lambda t: SelectChannels.apply(t, channels), (f.requires_grad_(True),))
    g = torch.autograd.grad(SelectChannels.apply(f, channels).sum(), f)[0]
    assert g.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous()  # no layout conversion
    assert g[:, [1, 4]].eq(1).all() and g[:, [0, 2, 3, 5]].eq(0).all()


def test_run_grids_hold_thumbnails_not_pictures(tmp_path, monkeypatch):
    # a run of thousands of pictures keeps only what its grid cell shows (issue 26: memory flat with the work)
    import cnnscope.preimage.summaries as runs
    from cnnscope.cli import main

    seen = []
    monkeypatch.setattr(runs, "image_grid", lambda images, *a, **k: seen.extend(images))
    assert main(["maximize", "--layer", "stage2", "--channel", "0-1", "--size", "256", "--iters", "2",
                 "--out", str(tmp_path)]) == 0
    assert len(seen) == 2
    for thumb in seen:
        assert isinstance(thumb, np.ndarray) and thumb.dtype == np.uint8 and max(thumb.shape[:2]) == 200
    full = np.asarray(Image.open(sorted(tmp_path.glob("maximize_*stage2*.png"))[0]))
    assert abs(full.astype(float).mean() - seen[0].astype(float).mean()) < 3  # the same picture, smaller


class _Diverges(Term):
    """A data term that turns non-finite: the solver must refuse it in one line."""

    label = "diverges"
    layers = ("stage1",)

    def value(self, ctx: Context) -> torch.Tensor:
        return ctx.features["stage1"].mean((1, 2, 3)) * float("nan")


def test_a_failed_solve_leaves_no_hooks_on_the_model(lite0):
    def hooks() -> int:
        return sum(len(m._forward_hooks) for m in lite0.net.modules())

    before = hooks()
    with pytest.raises(CnnscopeError, match="diverged at step 1"):
        solve(lite0, _Diverges(), torch.zeros(1, 3, 64, 64), SolverConfig(iters=3, **QUICK))
    assert hooks() == before


def test_adam_is_torchs_fused_adam_to_the_bit_without_importing_dynamo():
    """The solver's Adam calls PyTorch's fused kernel as torch.optim.Adam(fused=True) does — the same numbers
    to the bit, the learning rate rescaled mid-way as the solver's slow phase does — without the Optimizer
    class, whose first construction imports torch._dynamo (1.2 s of every command that optimises a picture)."""
    import subprocess
    import sys

    from cnnscope.preimage.solver import AdamSteps

    torch.manual_seed(0)
    ours = [torch.randn(1, 3, 65, 33, 2, requires_grad=True), torch.randn(7, requires_grad=True)]
    theirs = [t.detach().clone().requires_grad_() for t in ours]
    adam, reference = AdamSteps(ours, 0.05, SolverConfig()), torch.optim.Adam(theirs, lr=0.05, fused=True)
    assert adam.fused
    for i in range(25):
        grads = [torch.randn_like(t) * (i + 1) for t in ours]
        slow = 1.0 if i < 15 else 0.25
        adam.step(grads, slow)
        for t, g in zip(theirs, grads):
            t.grad = g.clone()
        reference.param_groups[0]["lr"] = 0.05 * slow
        reference.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    code = ("import sys, cnnscope\ncnnscope.maximize('efficientnet_lite0', 'stage2', 3, size=64, iters=3)\n"
            "print('torch._dynamo' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.stdout.strip().splitlines()[-1] == "False", res.stderr
