"""--device: names resolved or refused in one line, and no tensor cnnscope creates lands off the model's device.

Without a GPU here, device consistency is checked on PyTorch's `meta` device: a network moved there computes
shapes only, and any CPU tensor cnnscope mixes in raises "Tensor on device cpu is not on the expected device
meta!". A method has passed once it reaches the point where it reads values back (which meta cannot give).
"""

import traceback

import pytest
import torch

from cnnscope import CnnscopeError, load_model
from cnnscope.backprop.analysis import pearson
from cnnscope.backprop.methods import backprop_maps, render
from cnnscope.cli import main
from cnnscope.device import available, resolve
from cnnscope.images import load_image
from cnnscope.preimage.solver import SolverConfig
from cnnscope.preimage.tasks import invert, maximize
from cnnscope.targets import Target

READ_BACK = ("Cannot copy out of meta tensor", "cannot be called on meta tensors",  # moving values home
             "register_meta function for torch.nonzero()")  # data-dependent indexing (the best-so-far images)


def _until_read_back(fn) -> str:
    """Run fn on a meta-device model; return the cnnscope function where it first read values back (a device
    mix fails the test)."""
    try:
        fn()
    except (NotImplementedError, RuntimeError) as err:
        message = str(err)
        assert "not on the expected device" not in message and "two devices" not in message, message
        assert any(m in message for m in READ_BACK), message
        frames = [f for f in traceback.extract_tb(err.__traceback__) if "/cnnscope/" in f.filename]
        return frames[-1].name
    raise AssertionError("a meta-device run finished without reading values back")


@pytest.fixture()
def meta_model():
    model = load_model("efficientnet_lite0", device="meta")
    assert model.device == torch.device("meta") and model.spec.device == "meta"
    return model


def test_device_names_are_resolved_or_refused_in_one_line():
    assert resolve("cpu") == torch.device("cpu") and resolve("CPU ") == torch.device("cpu")
    assert resolve("auto") == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    assert available()[0] == "cpu"
    with pytest.raises(CnnscopeError, match="not a device"):
        resolve("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CnnscopeError, match=r"--device cuda: not available here \(available: cpu"):
            resolve("cuda")
        with pytest.raises(CnnscopeError, match="--device cuda:3: not available here"):
            resolve("cuda:3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_refuses_a_missing_gpu_before_any_work(tmp_path, capsys):
    assert main(["invert", "sample:chelsea", "--device", "cuda", "--iters", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnscope: error: --device cuda: not available here (available: cpu)"]
    assert not (tmp_path / "o").exists()


def test_cpu_and_auto_give_the_same_bytes_here(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("auto means CUDA on this machine")
    for device in ("cpu", "auto"):
        assert main(["invert", "sample:chelsea", "--layer", "stage2", "--iters", "8", "--size", "64", "--device",
                     device, "--out", str(tmp_path / device)]) == 0
    a = sorted(p.name for p in (tmp_path / "cpu").iterdir())
    assert a == sorted(p.name for p in (tmp_path / "auto").iterdir())
    for name in a:
        assert (tmp_path / "cpu" / name).read_bytes() == (tmp_path / "auto" / name).read_bytes(), name


@pytest.mark.parametrize("method,target", [("salinet", Target("class", 281, layer="logits")),
                                           ("deconvnet", Target("channel", 3, layer="stage4")),
                                           ("desalinet", Target("neuron", 5, layer="stage6"))])
def test_backprop_stays_on_the_models_device(meta_model, method, target):
    x = meta_model.prepare(load_image("sample:chelsea"))  # prepared on the model's device
    assert x.device.type == "meta"
    # the whole forward and backward ran; only moving the maps home (to the CPU) read values back
    assert _until_read_back(lambda: backprop_maps(meta_model, x, [target], method)) == "backprop_maps"


def test_preimages_stay_on_the_models_device(meta_model):
    config = SolverConfig(iters=2, progress=False)
    # M&V's recipe: target features, noise, energy and gradient, then the best-so-far bookkeeping reads back
    assert _until_read_back(lambda: invert(meta_model, "sample:chelsea", ["stage3"], size=64, recipe="mv",
                                           config=config)) == "remember"
    # the lucid recipe (Fourier, decorrelated colour, random transforms) takes a whole step before reading back
    assert _until_read_back(lambda: maximize(meta_model, "logits", [Target("class", 281, layer="logits")], size=64,
                                             recipe="lucid", config=config)) == "_check_finite"


def test_equivariance_fit_stays_on_the_models_device(meta_model):
    from cnnscope.transforms.equivariance import fit_layer
    from cnnscope.transforms.transform import Transform

    x = torch.rand(10, 3, 224, 224)
    # features of x and gx, the spatial inverse on the layer's grid, crops and the regression sums of every
    # candidate support all run on the device; the first value read back is the held-back error that chooses
    # among the candidates (without a task to judge by: in _by_feature_error)
    assert _until_read_back(lambda: fit_layer(meta_model, "stage4", Transform.parse("vflip"), x[:6], x[6:],
                                              (None, None), crops=1)) == "_by_feature_error"


def test_mixed_precision_runs_on_the_cpu_and_stays_close():
    full, half = load_model("efficientnet_lite0"), load_model("efficientnet_lite0", amp=True)
    assert half.spec.amp and half.spec.to_dict()["amp"] is True and "amp" not in full.spec.to_dict()
    x = full.prepare(load_image("sample:chelsea"))
    target = [Target("class", 281, layer="logits")]
    a, b = (backprop_maps(m, x, target, "desalinet") for m in (full, half))
    assert a.dtype == b.dtype == torch.float32 and pearson(render(a), render(b)) > 0.9
    config = SolverConfig(iters=10, progress=False)
    r = maximize(half, "logits", target, size=64, recipe="lucid", config=config)[0]
    assert torch.isfinite(r.images).all() and r.history[-1] < r.history[0]  # bfloat16 forward, and it optimises


def test_selectivity_sanity_and_a_batched_atlas_stay_on_the_models_device(meta_model):
    from cnnscope.backprop.analysis import cascading_randomisation, selectivity
    from cnnscope.preimage.style import texture

    image = load_image("sample:chelsea")
    where = {
        "selectivity": _until_read_back(lambda: selectivity(meta_model, [image], "stage6", neurons=2, progress=False)),
        "sanity": _until_read_back(lambda: cascading_randomisation(meta_model, image, Target("class", 281,
                                                                   layer="logits"), progress=False)),
        # an atlas job of four channels solved together (report --atlas-batch 4)
        "atlas": _until_read_back(lambda: maximize(meta_model, "stage6", [Target("neuron", c) for c in range(4)],
                                                   size=64, recipe="lucid", config=SolverConfig(iters=2,
                                                                                               progress=False))),
        "texture": _until_read_back(lambda: texture(meta_model, image, size=64, layers=("stage1",),
                                                    config=SolverConfig(iters=2, optimizer="adam",
                                                                        progress=False))),
    }
    # selectivity: the forward ran, then the strongest unit is picked (a data-dependent read); sanity: every
    # randomised block's maps computed, read back when moved home; the batched atlas: a whole step; texture: the
    # target Gram matrices and the starting loss (recorded as gram_before) computed on the device first
    assert where == {"selectivity": "selectivity", "sanity": "backprop_maps", "atlas": "_check_finite",
                     "texture": "<dictcomp>"}


def test_a_report_runs_where_its_model_runs(meta_model):
    """`report --device cuda` once planned its jobs on the CPU (the spec was rebuilt from the name alone)."""
    from cnnscope.jobs import model_for
    from cnnscope.report.atlas import ReportSettings, plan

    settings = ReportSettings("efficientnet_lite0", layers=("stage2",), channels=2, examples=1,
                              stitch_with="efficientnet_lite1")
    jobs = plan(settings, meta_model)
    specs = {spec for job in jobs for spec in job.models()}
    assert {s.device for s in specs} == {"meta"} and len(specs) == 2  # Lite0 and the stitched Lite1
    assert model_for(meta_model.job_spec()) is meta_model  # not loaded again in this process
