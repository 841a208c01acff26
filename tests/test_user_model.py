"""Bring your own model: an nn.Module goes straight into load_model and is never changed by an analysis."""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnscope import CnnscopeError, load_model
from cnnscope.backprop.methods import backprop_maps
from cnnscope.cli import main
from cnnscope.images import load_image
from cnnscope.jobs import execute, provide
from cnnscope.jobs.engine import model_for
from cnnscope.preimage.jobs import InvertJob
from cnnscope.preimage.solver import SolverConfig
from cnnscope.preimage.tasks import Prior, invert
from cnnscope.targets import Target


def _user_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _snapshot(net: nn.Module) -> dict:
    return {"state": {k: v.clone() for k, v in net.state_dict().items()},
            "training": [m.training for m in net.modules()],
            "requires_grad": [p.requires_grad for p in net.parameters()],
            "grad": [None if p.grad is None else p.grad.clone() for p in net.parameters()],
            "hooks": [len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
                      for m in net.modules()]}


def test_a_users_module_is_analysed_and_never_changed():
    net = _user_net().train()  # left in training mode, as users often do
    net[0].weight.grad = torch.full_like(net[0].weight, 0.5)
    net[-1].weight.requires_grad_(True)
    before = _snapshot(net)
    model = load_model(net, preprocess={"input_size": 48})
    assert model.preprocess.resize == 48 and model.classes == [f"class {i}" for i in range(10)]
    assert not model.net.training and model.net is not net
    image = load_image("sample:chelsea")
    # predict answers for every image of a batch
    answers = model.predict(torch.stack([model.preprocess.geometry(image)[0]] * 2), k=3)
    assert len(answers) == 2 and all(len(a) == 3 for a in answers)
    assert answers[0][0].name.startswith("class ")
    r = invert(model, image, ["4"], size=48, config=SolverConfig(iters=5, progress=False))
    assert r.images.shape == (1, 3, 48, 48)
    maps = backprop_maps(model, model.prepare(image), [Target("class", 3, layer="9")], "deconvnet")
    assert maps.shape == (1, 1, 3, 48, 48) and maps.abs().sum() > 0
    after = _snapshot(net)
    for key in ("training", "requires_grad", "hooks"):
        assert after[key] == before[key], key
    for k, v in before["state"].items():  # BatchNorm running statistics included
        assert torch.equal(after["state"][k], v), k
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(after["grad"], before["grad"]))


def test_a_module_model_runs_as_jobs_in_process_but_refuses_workers(tmp_path):
    model = load_model(_user_net(), preprocess={"input_size": 48})
    spec = model.job_spec()
    provide(spec, model)
    job = InvertJob("inv", spec, "sample:chelsea", ("4",), 48, "mv", SolverConfig(iters=3, progress=False),
                    Prior())
    run = execute([job], tmp_path / "plain", progress=False)
    assert run.computed == 1 and (tmp_path / "plain" / "inv.json").is_file()
    with pytest.raises(CnnscopeError, match="cannot be sent to worker processes"):
        model_for(type(spec)(spec.name + " elsewhere"))


def test_a_scripted_module_is_copied_too():
    net = torch.jit.script(_user_net().eval())
    model = load_model(net, preprocess={"input_size": 48}, classes=[f"digit {i}" for i in range(10)])
    assert model.torchscript and model.net is not net and model.class_name(3) == "digit 3"
    with pytest.raises(CnnscopeError, match="zoo name, a file spec or an nn.Module"):
        load_model(3)


def test_deconvnet_refuses_torchscript_instead_of_returning_the_gradient(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    x = torch.rand(1, 3, 32, 32)
    target = [Target("class", 2, layer="6")]
    python = load_model(net, preprocess={"input_size": 32})
    deconv = backprop_maps(python, x, target, "deconvnet")
    grad = backprop_maps(python, x, target, "salinet")
    assert not torch.allclose(deconv, grad)  # the rule is applied where the ReLUs are
    scripted = torch.jit.script(net)
    path = tmp_path / "net.pt"
    scripted.save(str(path))
    ts = load_model(str(path), preprocess={"input_size": 32})
    output = [Target("class", 2, layer="output")]  # (a TorchScript model's one addressable layer)
    assert torch.allclose(backprop_maps(ts, x, output, "salinet"), grad, atol=1e-6)
    for method in ("deconvnet", "desalinet"):
        with pytest.raises(CnnscopeError, match="TorchScript"):
            backprop_maps(ts, x, output, method)
    res = subprocess.run([sys.executable, "-m", "cnnscope", "saliency", "sample:chelsea", "--model", str(path),
                          "--input-size", "32", "--method", "deconvnet", "--class", "2", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "TorchScript" in res.stderr


def test_a_model_file_that_is_not_torchscript_is_named_with_the_option_that_loads_it(tmp_path):
    net = _user_net()
    torch.save(net, tmp_path / "whole.pt")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    torch.save({"epoch": 3, "state_dict": net.state_dict()}, tmp_path / "checkpoint.pt")
    (tmp_path / "junk.pt").write_text("hello")
    expected = {"whole.pt": "a whole pickled module", "weights.pt": "a state dict (", "checkpoint.pt":
                "a checkpoint dictionary (keys: epoch, state_dict)", "junk.pt": "neither a TorchScript file"}
    for name, message in expected.items():
        with pytest.raises(CnnscopeError) as err:
            load_model(str(tmp_path / name))
        assert message in str(err.value) and ("--weights" in str(err.value) or name == "junk.pt")


BORDER_NET = '''
import torch
from torch import nn


class Border(nn.Module):
    """Class 0 when the top-left corner of what it sees is red: it answers for the border of the picture."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.relu(self.conv(x))
        corner = x[:, :, :2, :2].mean((2, 3))
        red = corner[:, 0] - corner[:, 1:].mean(1)
        return 10 * torch.stack([red, -red], 1) + 0.01 * self.fc(h.mean((2, 3)))


def build():
    torch.manual_seed(0)
    return Border()
'''


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_a_factory_model_with_input_size_sees_the_whole_picture_in_every_verb(tmp_path):
    (tmp_path / "border.py").write_text(BORDER_NET)
    picture = np.full((120, 160, 3), 255, np.uint8)  # white, with a red frame 8 px wide
    picture[:8], picture[-8:], picture[:, :8], picture[:, -8:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
    Image.fromarray(picture).save(tmp_path / "framed.png")
    image = str(tmp_path / "framed.png")
    model = ["--model", f"{tmp_path}/border.py:build", "--input-size", "48"]
    code, out, err = _cli("predict", image, *model, "--json")
    assert code == 0, err
    assert json.loads(out)["predictions"][0]["top"][0]["name"] == "class 0"  # the frame was seen: no centre crop
    (tmp_path / "card.toml").write_text('model = "border.py:build"\ninput_size = 48\nmean = [0.5, 0.5, 0.5]\n'
                                        'std = [0.5, 0.5, 0.5]\n')
    code, out, err = _cli("predict", image, "--profile", str(tmp_path / "card.toml"), "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["predictions"][0]["top"][0]["name"] == "class 0" and answer["preprocess"]["mean"] == [0.5] * 3
    for verb, extra in (("invert", [image, "--layer", "relu"]), ("maximize", ["--layer", "relu", "--channel", "1"]),
                        ("saliency", [image, "--class", "0"])):
        out_dir = tmp_path / verb
        code, _, err = _cli(verb, *extra, *model, "--iters" if verb != "saliency" else "--seed", "3",
                            "--out", str(out_dir))
        assert code == 0, (verb, err)
        pictures = [p for p in out_dir.glob("*.png") if "grid" not in p.name]
        assert pictures and all(Image.open(p).size == (48, 48) for p in pictures), verb
    (tmp_path / "bad.toml").write_text('modle = "border.py:build"\n')
    code, _, err = _cli("predict", image, "--profile", str(tmp_path / "bad.toml"))
    assert code == 2 and "did you mean 'model'" in err and err.count("\n") == 1
