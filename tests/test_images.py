import numpy as np
import pytest
import torch
from PIL import Image

from cnnscope import CnnscopeError, load_image, sample_names, save_image
from cnnscope.models import Preprocess
from cnnscope.models.preprocess import tf_preprocess
from cnnscope.store import atomic_path
from tests.conftest import png_with_header_size


def test_samples():
    assert {"chelsea", "coffee", "astronaut", "brick", "gravel", "grass", "ihc"} <= set(sample_names())
    chelsea = load_image("sample:chelsea")
    assert chelsea.shape == (3, 300, 451) and chelsea.dtype == torch.float32
    assert 0 <= chelsea.min() and chelsea.max() <= 1
    brick = load_image("sample:brick")  # grayscale -> replicated RGB
    assert brick.shape == (3, 512, 512) and torch.equal(brick[0], brick[2])
    with pytest.raises(CnnscopeError, match="did you mean sample:chelsea"):
        load_image("sample:chelsey")


def test_modes(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:10, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert torch.allclose(img[:, 0, 0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(img[:, 15, 0], torch.tensor([1.0, 1, 1]))  # composited on white

    pal = Image.fromarray(rgba, "RGBA").convert("P")
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (3, 20, 30)

    deep = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    Image.fromarray(deep).save(tmp_path / "g16.png")
    img16 = load_image(tmp_path / "g16.png")
    assert abs(float(img16[0, -1, -1]) - deep[-1, -1] / 65535) < 1e-4  # full 16-bit scale kept

    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").shape == (3, 12, 16)


def test_exif_orientation(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape == (3, 20, 10)  # displayed upright: portrait
    assert out[:, :5].mean() > 0.9 and out[:, -5:].mean() < 0.1  # white half ends on top


@pytest.mark.parametrize("case,match", [
    ("missing", "no such file"), ("dir", "is a directory"), ("empty", "empty"), ("text", "not an image"),
    ("truncated", "truncated or corrupt"), ("huge", "over the 64 MP limit"),
    ("large", "9000x8000 px .72 MP., over the 64 MP"),
    ("tiny", "at least 8 px"),
])
def test_bad_images(tmp_path, case, match):
    path = tmp_path / f"{case}.png"
    if case == "dir":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello, I am not a picture\n")
    elif case == "truncated":
        Image.fromarray((np.random.rand(64, 64, 3) * 255).astype(np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif case == "huge":
        path.write_bytes(png_with_header_size(20000, 20000))
    elif case == "large":
        path.write_bytes(png_with_header_size(9000, 8000))
    elif case == "tiny":
        Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(CnnscopeError, match=match):
        load_image(path)


def test_preprocess_geometry_and_exact_inverse():
    pp = Preprocess(input_size=224, resize=256)
    img = load_image("sample:chelsea")  # 300 x 451
    x = pp(img)
    assert x.shape == (1, 3, 224, 224)
    back = pp.denormalize(x)
    assert torch.allclose(back, pp.geometry(img), atol=1e-6)
    assert torch.allclose(pp.normalize(pp.denormalize(x)), x, atol=1e-5)
    tall = torch.rand(3, 500, 300)
    assert pp.geometry(tall).shape == (1, 3, 224, 224)


def test_save_is_atomic(tmp_path):
    target = tmp_path / "out.png"
    save_image(torch.rand(3, 16, 16), target)
    assert Image.open(target).size == (16, 16)
    assert load_image(target).shape == (3, 16, 16)
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "never.png") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("shape", [(8, 2000), (2000, 8), (30, 1000), (100, 3001), (1234, 200)])
def test_the_crop_in_source_coordinates_gives_the_whole_resizes_pixels(shape):
    """Preprocess.geometry resizes only the crop's region of a long picture: the same pixels as resizing the
    whole picture and then cropping (the independent reference below), in less memory."""

    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    for pp in (Preprocess(), tf_preprocess(224), Preprocess(input_size=64, resize=64)):
        short, s = pp.resize or pp.input_size, pp.input_size
        scale = short / min(shape)
        size = (max(short, round(shape[0] * scale)), max(short, round(shape[1] * scale)))
        whole = torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", antialias=True)
        top, left = int(round((size[0] - s) / 2.0)), int(round((size[1] - s) / 2.0))
        assert torch.allclose(pp.geometry(x), whole[..., top:top + s, left:left + s].clamp(0, 1), atol=1e-6)


def test_an_image_set_keeps_its_pictures_in_a_file_and_reads_them_back_exactly():
    """The analyses' image sets live in a temporary file: the same pictures as the in-memory set, bit for bit
    (whole, as a view, with crops drawn from the same generator), and building a set of 300 pictures (180 MB as
    float32) leaves the process's memory where it was."""
    from cnnscope.data import ImageSet, image_set, image_store, with_crops
    from cnnscope.memory import process_rss_bytes
    from cnnscope.models import load_model

    model = load_model("efficientnet_lite0")
    kept, _ = image_set(model, None, 20, seed=3)
    stored, _ = image_store(model, None, 20, seed=3)
    assert len(stored) == 20 and stored.shape == kept.shape and torch.equal(stored[:], kept)
    view = stored.subset(torch.tensor([7, 2, 11]))
    assert torch.equal(view[1], kept[2]) and torch.equal(view[1:], kept[[2, 11]])
    crops = [with_crops(s, 5, 224, torch.Generator().manual_seed(0)) for s in (view, kept[[7, 2, 11]])]
    assert isinstance(crops[0], ImageSet) and torch.equal(crops[0][:], crops[1])
    gen = torch.Generator().manual_seed(0)
    before = process_rss_bytes()
    big = ImageSet.write(torch.rand(15, 3, 224, 224, generator=gen) for _ in range(20))
    assert len(big) == 300 and process_rss_bytes() - before < 40 * 2 ** 20
    assert float(big[299].mean()) == pytest.approx(0.5, abs=0.01)
