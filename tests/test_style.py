import json

import pytest
import torch
from PIL import Image
from torch import nn

from cnnscope import CnnscopeError, capture, load_image
from cnnscope.models import Model, Preprocess
from cnnscope.preimage import SolverConfig
from cnnscope.preimage.generator import (
    NetSettings,
    StyleGenerator,
    TextureGenerator,
    apply_generator,
    load_checkpoint,
    train_generator,
)
from cnnscope.preimage.objectives import Context
from cnnscope.preimage.style import GramTerm, gram, soften, style_target, stylize, texture


def test_gram_of_known_tensor():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # 2 channels, 2 positions
    assert torch.allclose(gram(f), torch.tensor([[[2.5, 5.5], [5.5, 12.5]]]))
    assert soften(torch.zeros(1, 2, 2, 2), 1.0).allclose(torch.ones(1, 2, 2, 2))  # uniform stays uniform


def test_gram_loss_zero_at_the_style_image(lite0):
    img = load_image("sample:brick")[:, :224, :224]  # already the input size: no resampling differences
    layers = ["stem", "_blocks.3._act0"]
    target = style_target(lite0, img, layers, size=224)
    x01 = img.unsqueeze(0)
    feats = capture(lite0, lite0.preprocess.normalize(x01), layers)
    for name in layers:
        assert GramTerm(name, target.grams[name]).value(Context(x01, feats)).item() == pytest.approx(0.0, abs=1e-6)
        noise_feats = capture(lite0, torch.randn(1, 3, 224, 224), layers)
        assert GramTerm(name, target.grams[name]).value(Context(x01, noise_feats)).item() > 1e-3


def _tiny_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
    net.eval().requires_grad_(False)
    return Model("tiny", net, Preprocess(input_size=64, resize=None), ["x"])


def test_texture_on_tiny_random_net_lowers_gram_loss_tenfold():
    model = _tiny_model()
    r, info = texture(model, "sample:gravel", layers=["1", "3", "5"], config=SolverConfig(optimizer="adam", iters=150,
                                                                                        progress=False))
    before, after = sum(info["gram_before"].values()), sum(info["gram_after"].values())
    assert before / after >= 10, (before, after)
    assert r.images.shape == (1, 3, 64, 64)


def test_texture_any_size_and_multiscale(lite0):
    r, info = texture(lite0, "sample:brick", size=96, layers=["stem", "_blocks.1._act0"], scales=2,
                      config=SolverConfig(optimizer="adam", iters=20, progress=False))
    assert info["sizes"] == [48, 96] and r.images.shape == (1, 3, 96, 96)
    with pytest.raises(CnnscopeError, match="unknown layer"):
        texture(lite0, "sample:brick", layers=["stage99"], config=SolverConfig(iters=1, progress=False))


def test_style_transfer_moves_towards_the_style(lite0):
    r, info = stylize(lite0, "sample:chelsea", "sample:gravel", size=96, style_layers=["stem", "_blocks.1._act0"],
                      content_layer="stage2", config=SolverConfig(optimizer="adam", iters=40, progress=False))
    start = stylize(lite0, "sample:chelsea", "sample:gravel", size=96, style_layers=["stem", "_blocks.1._act0"],
                    content_layer="stage2", config=SolverConfig(optimizer="adam", iters=1, progress=False))[1]
    assert sum(info["gram_after"].values()) < 0.5 * sum(start["gram_after"].values())


def test_generators_deterministic_and_shaped():
    torch.manual_seed(0)
    g = TextureGenerator().eval()
    z = g.noise(2, 64, torch.Generator().manual_seed(3))
    a, b = g(z), g(z)
    assert torch.equal(a, b) and a.shape == (2, 3, 64, 64) and 0 <= a.min() and a.max() <= 1
    s = StyleGenerator().eval()
    x = torch.rand(1, 3, 40, 52)
    y = s(x)
    assert y.shape == (1, 3, 40, 52) and torch.equal(y, s(x))


@pytest.mark.parametrize("mode", ["texture", "style"])
def test_training_resumes_without_jump(tmp_path, lite0, mode):
    settings = dict(mode=mode, model=lite0.name, style="sample:brick", size=32, batch=2, iters=6, seed=1,
                    style_layers=["stem", "_blocks.1._act0"], content_layer="stage1" if mode == "style" else None)
    full = train_generator(lite0, NetSettings(**settings), tmp_path / "full.safetensors", progress=False)
    part = tmp_path / "part.safetensors"
    train_generator(lite0, NetSettings(**{**settings, "iters": 3}), part, progress=False)
    resumed = train_generator(lite0, NetSettings(**settings), part, resume=True, progress=False)
    assert resumed["history"][:3] == full["history"][:3]
    assert resumed["history"] == pytest.approx(full["history"], rel=1e-5)  # steps 4-6 continue, no jump
    net, saved, state = load_checkpoint(part)
    assert state["iteration"] == 6 and saved.mode == mode and len(state["adam"]) > 0
    image = load_image("sample:coffee") if mode == "style" else None
    out = apply_generator(net, saved, image, size=48)
    assert out.shape[0] == 3 and min(out.shape[1:]) == 48


def test_cli_texture_and_generator(tmp_path, capsys):
    from cnnscope.cli import main

    assert main(["texture", "sample:brick", "--size", "64", "--iters", "15", "--style-layers", "stem,_blocks.1._act0",
                 "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "texture_efficientnet_lite0_brick.json").read_text())
    assert meta["results"]["gram_total_after"] < meta["results"]["gram_total_before"]
    net = tmp_path / "net.safetensors"
    assert main(["train-texture-net", "sample:brick", "--size", "32", "--iters", "4", "--batch", "1",
                 "--out", str(net)]) == 0
    assert main(["apply-texture-net", "--net", str(net), "--size", "64", "--out", str(tmp_path / "t.png")]) == 0
    assert Image.open(tmp_path / "t.png").size == (64, 64)
    assert json.loads((tmp_path / "t.json").read_text())["trained_iterations"] == 4
    assert main(["apply-texture-net", "--net", str(tmp_path / "t.png"), "--out", str(tmp_path / "u.png")]) == 2
    assert "not a readable safetensors" in capsys.readouterr().err


def test_a_content_folder_is_decoded_crop_by_crop_with_the_same_training(tmp_path, lite0, monkeypatch):
    """Style mode's content folder (Johnson et al. trained on COCO's 80k pictures) is read a picture per drawn
    crop, not decoded whole into memory; the crops, and so the training, are those of the pictures held."""
    from cnnscope import data, save_image
    from cnnscope.preimage import generator

    folder = tmp_path / "content"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut"):
        save_image(load_image(f"sample:{name}"), folder / f"{name}.png")
    assert isinstance(generator.content_pool(str(folder)), data.Pictures)
    settings = NetSettings(mode="style", model=lite0.name, style="sample:brick", size=32, batch=2, iters=3, seed=1,
                           style_layers=["stem"], content_layer="stage1", content=str(folder))
    streamed = train_generator(lite0, settings, tmp_path / "a.safetensors", progress=False)
    monkeypatch.setattr(generator, "content_pool", lambda f: data.load_images(f))
    held = train_generator(lite0, settings, tmp_path / "b.safetensors", progress=False)
    assert streamed["history"] == held["history"]
