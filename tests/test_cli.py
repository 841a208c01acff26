"""The CLI end to end, as a user runs it: bad input gives one line, exit code 2, no traceback, no file."""

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnscope import load_image, save_image
from cnnscope.cli import main
from tests.conftest import png_with_header_size


def _cap_address_space(gb: float):
    """A child that runs under an address-space cap fails cleanly (MemoryError) instead of hurting the machine."""
    def limit():
        cap = int(gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return limit


def run(*args, cwd=None, cap_gb: float | None = None):
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-m", "cnnscope", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300, preexec_fn=_cap_address_space(cap_gb) if cap_gb else None)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image\n")
    Image.fromarray((np.random.rand(64, 64, 3) * 255).astype(np.uint8)).save(d / "full.jpg")
    (d / "truncated.jpg").write_bytes((d / "full.jpg").read_bytes()[:400])
    (d / "huge.png").write_bytes(png_with_header_size(30000, 30000))
    Image.new("RGB", (3, 3)).save(d / "tiny.png")
    # Starts like a pickle of an unknown protocol (torch warns on those) and continues with random bytes.
    (d / "garbage.pth").write_bytes(bytes([0x80, 213]) + os.urandom(2046))
    from cnnscope.models import load_model

    torch.save(load_model("efficientnet_lite0").net.state_dict(), d / "lite0.pth")
    (d / "afile").write_text("x")
    (d / "two_classes.txt").write_text("cat\ndog\n")
    (d / "model.py").write_text("import torch\ndef build():\n    return torch.nn.Identity()\n")
    (d / "nologits.py").write_text("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
                                   "        return {'features': x}\ndef build():\n    return M()\n")
    (d / "fail.py").write_text("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
                               "        raise ValueError('boom')\ndef build():\n    return M()\n")
    Image.fromarray((np.random.rand(8, 2000, 3) * 255).astype(np.uint8)).save(d / "thin.png")
    (d / "existing.safetensors").write_text("precious")
    (d / "four").mkdir()
    for i in range(4):
        Image.fromarray((np.random.rand(64, 64, 3) * 255).astype(np.uint8)).save(d / "four" / f"{i}.png")
    for name, index in (("lab", 5000), ("badlab", None)):
        (d / name).mkdir()
        for i in range(4):
            Image.fromarray((np.random.rand(64, 64, 3) * 255).astype(np.uint8)).save(d / name / f"{i}.png")
        header = "file,class_index\n" if index is not None else "name;label\n"
        rows = "".join(f"{i}.png,{index if i == 0 else 3}\n" if index is not None else f"{i}.png;1\n" for i in range(4))
        (d / name / "labels.csv").write_text(header + rows)
    torch.save({"features.0.weight": _Code()}, d / "code.pth")
    from cnnscope.cli import main

    assert main(["train-texture-net", "sample:brick", "--size", "32", "--iters", "2", "--batch", "1",
                 "--out", str(d / "net.safetensors")]) == 0
    (d / "net.json").unlink(missing_ok=True)
    return d


class _Code:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


BAD = {
    "missing image": (["predict", "{d}/nope.jpg"], "no such file"),
    "directory": (["invert", "{d}", "--layer", "stage2", "--out", "{d}/inv"], "is a directory"),
    "folder with a bad file": (["predict", "{d}"], "file is empty"),  # a folder: its pictures, each checked
    # the fit's peak is checked first, before the pictures are read (a budget that leaves no room for the sums)
    "equivariance over budget": (["equivariance", "--images", "{d}/four", "--layers", "stage2", "--max-memory",
                                  "0.001", "--out", "{d}/eq"], "no map fits the memory budget at stage2"),
    "reproduce over budget": (["reproduce", "--findings", "invariance,stitching", "--max-memory", "0.3", "--out",
                               "{d}/rep"], "no map fits the memory budget at stem"),
    "stitch over budget": (["stitch", "--a", "efficientnet_lite0", "--b", "efficientnet_lite1", "--layers", "stem",
                            "--images", "{d}/four", "--max-memory", "0.005", "--out", "{d}/st"],
                           "stitching would need about"),
    "classes for other outputs": (["predict", "sample:chelsea", "--classes", "{d}/two_classes.txt"],
                                  "2 class names for a network with 1000 outputs"),
    "empty file": (["predict", "{d}/empty.jpg"], "file is empty"),
    "text file": (["predict", "{d}/notes.txt"], "not an image file"),
    "truncated jpeg": (["predict", "{d}/truncated.jpg"], "truncated or corrupt"),
    "absurdly large": (["predict", "{d}/huge.png"], "too large"),
    "tiny image": (["predict", "{d}/tiny.png"], "at least 8 px"),
    "unknown sample": (["predict", "sample:doge"], "unknown sample"),
    "unknown model": (["predict", "sample:coffee", "--model", "efficientnet_lite9"], "did you mean"),
    "no weights": (["layers", "alexnet"], "--weights PATH"),
    "corrupt weights": (["layers", "alexnet", "--weights", "{d}/garbage.pth"], "not a PyTorch checkpoint"),
    "wrong weights": (["layers", "alexnet", "--weights", "{d}/lite0.pth"], "missing keys"),
    "missing weights": (["layers", "alexnet", "--weights", "{d}/none.pth"], "no such file"),
    "unknown layer": (["activations", "sample:coffee", "--layer", "stage9", "--out", "{d}/out/a.safetensors"],
                      "closest: stage"),
    "bad out suffix": (["activations", "sample:coffee", "--layer", "stage1", "--out", "{d}/out/a.npy"],
                       "must end in .safetensors"),
    "top-k zero": (["predict", "sample:coffee", "--top-k", "0"], "positive integer"),
    "mean of 2": (["predict", "sample:coffee", "--mean", "0.5,0.5"], "expected 3 finite numbers"),
    "missing model file": (["predict", "sample:coffee", "--model", "{d}/nope.py:build"], "no such file"),
    "missing factory": (["predict", "sample:coffee", "--model", "{d}/model.py:make"], "has no function 'make'"),
    "not a module output": (["predict", "sample:coffee", "--model", "{d}/model.py:build"], "not [N, classes]"),
    "demo out is a file": (["demo", "--out", "{d}/afile"], "not a folder"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "invert unknown layer": (["invert", "sample:chelsea", "--layer", "stage9", "--out", "{d}/pre"], "closest: stage"),
    "unknown recipe": (["maximize", "--class", "volcano", "--recipe", "deepdream", "--out", "{d}/pre"],
                       "invalid choice"),
    "unknown param": (["maximize", "--class", "volcano", "--param", "wavelet", "--out", "{d}/pre"], "invalid choice"),
    "unknown transform": (["maximize", "--class", "volcano", "--transforms", "pad:4,blur:3", "--out", "{d}/pre"],
                          "unknown transform 'blur'"),
    "NaN scale": (["maximize", "--class", "volcano", "--transforms", "scale:nan-1", "--out", "{d}/pre"],
                  "not a finite number"),
    "scale out of range": (["invert", "sample:chelsea", "--layer", "stage2", "--transforms", "scale:0-2",
                            "--out", "{d}/pre"], "scale range"),
    "negative rotation": (["maximize", "--class", "volcano", "--transforms", "rotate:-5", "--out", "{d}/pre"],
                          "0-180 degrees"),
    "NaN weight": (["maximize", "--class", "volcano", "--diversity", "nan", "--out", "{d}/pre"], "finite number"),
    "negative weight": (["accentuate", "sample:chelsea", "--class", "volcano", "--anchor-weight", "-1",
                         "--out", "{d}/pre"], "number >= 0"),
    "NaN lr": (["caricature", "sample:chelsea", "--layer", "stage2", "--lr", "nan", "--out", "{d}/pre"],
               "finite number"),
    "over memory budget": (["maximize", "--class", "volcano", "--size", "3000", "--out", "{d}/pre"],
                           "over the memory budget of 8 GB"),
    "diversity needs a batch": (["maximize", "--class", "volcano", "--diversity", "1", "--out", "{d}/pre"],
                                "--batch 2"),
    "negative jitter": (["invert", "sample:chelsea", "--layer", "stage2", "--jitter", "-1", "--out", "{d}/pre"],
                        "--jitter: expected an integer >= 0"),
    "maximize bad channel": (["maximize", "--layer", "stage2", "--channel", "999", "--out", "{d}/pre"],
                             "out of range"),
    "maximize bad range": (["maximize", "--layer", "stage2", "--channel", "5-2", "--out", "{d}/pre"],
                           "expected channels like 3, 0-15"),
    "saliency bad method": (["saliency", "sample:chelsea", "--method", "deepdream", "--out", "{d}/sal"],
                            "unknown method"),
    "saliency bad layer": (["saliency", "sample:chelsea", "--layer", "stage99", "--features", "--out", "{d}/sal"],
                           "closest: stage"),
    "saliency channel range": (["saliency", "sample:chelsea", "--layer", "stage2", "--channel", "999",
                                "--out", "{d}/sal"], "out of range"),
    "selectivity missing folder": (["selectivity", "--images", "{d}/nowhere", "--out", "{d}/sel"], "not a folder"),
    "stitch bad fit": (["stitch", "--fit", "1.5", "--out", "{d}/st"], "--fit: expected a fraction"),
    "stitch unknown layer": (["stitch", "--layers", "stage11", "--out", "{d}/st"], "closest: stage1"),
    "small bad out": (["train-small", "--out", "{d}/net.pt"], "must end in .safetensors"),
    "invert bad window": (["invert", "sample:chelsea", "--layer", "stem", "--window", "1-2", "--out", "{d}/pre"],
                          "expected y0:y1,x0:x1"),
    "invert needs a layer": (["invert", "sample:chelsea", "--out", "{d}/pre"], "--layer is required"),
    "hog cell size not a number": (["layers", "hog:big"], "must be a whole number"),
    "hog has no weights": (["layers", "hog", "--weights", "{d}/lite0.pth"], "no weights to load"),
    "hog even neighbourhood": (["equivariance", "--model", "hog", "--neighbourhood", "2", "--out", "{d}/eq"],
                               "expected an odd size"),
    "hog with layers": (["equivariance", "--model", "hog", "--layers", "stem", "--out", "{d}/eq"],
                        "has one layer"),
    "hog glyphs unknown sample": (["hog", "sample:doge", "--out", "{d}/hog"], "unknown sample"),
    "report missing folder": (["report", "--images", "{d}/nowhere", "--out", "{d}/rep"], "not a folder"),
    "report unknown layer": (["report", "--layers", "stage99", "--out", "{d}/rep"], "closest: stage"),
    "report bad transform": (["report", "--equivariance", "twirl", "--out", "{d}/rep"], "unknown transform"),
    # memory: estimated before allocating, refused beyond the budget (children run under an address-space cap)
    "hog glyphs too big": (["hog", "sample:coffee", "--glyph", "10000", "--out", "{d}/hog2"], "memory budget"),
    "hog size too big": (["hog", "sample:coffee", "--size", "100000", "--out", "{d}/hog2"], "memory budget"),
    "invert size too big": (["invert", "sample:chelsea", "--layer", "stem", "--size", "100000", "--out", "{d}/pre"],
                            "memory budget"),
    "stylize size too big": (["apply-texture-net", "--net", "{d}/net.safetensors", "--size", "100000", "--out",
                              "{d}/s.png"],
                             "memory budget"),
    "texture size too big": (["texture", "sample:brick", "--size", "60000", "--out", "{d}/tex"], "memory budget"),
    "max memory NaN": (["invert", "sample:chelsea", "--layer", "stem", "--max-memory", "nan", "--out", "{d}/pre"],
                       "finite number"),
    # the file system: checked before any work, never a traceback, never a silent overwrite
    "out under a file": (["invert", "sample:chelsea", "--layer", "stem", "--out", "{d}/afile/sub"],
                         "is a file, not a folder"),
    "out in /proc": (["invert", "sample:chelsea", "--layer", "stem", "--out", "/proc/cnnscope-out"], "cannot write"),
    "small out in /proc": (["train-small", "--out", "/proc/x.safetensors"], "cannot write"),
    "out name too long": (["saliency", "sample:chelsea", "--out", "{d}/" + "x" * 300], "too long"),
    "texture net overwrite": (["train-texture-net", "sample:brick", "--out", "{d}/existing.safetensors"],
                              "give --force"),
    "activations overwrite": (["activations", "sample:chelsea", "--layer", "stem", "--out",
                               "{d}/existing.safetensors"], "give --force"),
    "stylize overwrite": (["apply-texture-net", "--net", "{d}/net.safetensors", "--out", "{d}/tiny.png"],
                          "give --force"),
    "small overwrite": (["train-small", "--out", "{d}/existing.safetensors"], "give --force"),
    "stylize not a net": (["apply-texture-net", "--net", "{d}/existing.safetensors", "--out", "{d}/s.png"],
                          "not a readable safetensors"),
    # numbers: finite and in range, everywhere
    "negative style weight": (["style-transfer", "sample:chelsea", "sample:gravel", "--style-weight", "-5", "--out",
                               "{d}/st"],
                              "number >= 0"),
    "negative texture-net lr": (["train-texture-net", "sample:brick", "--lr", "-1", "--out", "{d}/n.safetensors"],
                                "number > 0"),
    "NaN texture-net lr": (["train-texture-net", "sample:brick", "--lr", "nan", "--out", "{d}/n.safetensors"],
                           "finite number"),
    "zero temperature": (["texture", "sample:brick", "--soften", "0", "--out", "{d}/tex"], "number > 0"),
    "infinite lr": (["maximize", "--class", "volcano", "--lr", "inf", "--out", "{d}/pre"], "finite number"),
    "NaN cosine": (["caricature", "sample:chelsea", "--layer", "stage2", "--cosine", "nan", "--out", "{d}/pre"],
                   "finite number"),
    "scale zero": (["equivariance", "--transform", "scale:0", "--out", "{d}/eq"], "between 0.1 and 10"),
    "rotate NaN": (["equivariance", "--transform", "rotate:nan", "--out", "{d}/eq"], "not a finite number"),
    "rotate huge": (["equivariance", "--transform", "rotate:1e9", "--out", "{d}/eq"], "between -360 and 360"),
    "flip with argument": (["equivariance", "--transform", "hflip:2", "--out", "{d}/eq"], "takes no argument"),
    "fit NaN": (["equivariance", "--fit", "nan", "--out", "{d}/eq"], "finite number"),
    "report zero iterations": (["report", "--iters", "0", "--out", "{d}/rep"], "positive integer"),
    "cka zero images": (["cka", "--limit", "0", "--out", "{d}/cka"], "expected an integer >= 4"),
    "mean NaN": (["predict", "sample:coffee", "--mean", "nan,0.5,0.5"], "finite numbers"),
    # the rest of the input space
    "ray malformed": (["report", "--quick", "--ray", "notanaddress", "--out", "{d}/rep"], "HOST:PORT"),
    "ray unreachable": (["report", "--quick", "--ray", "127.0.0.1:9", "--out", "{d}/rep"], "nothing answers"),
    "too many workers": (["report", "--quick", "--workers", "10000", "--out", "{d}/rep"], "cores"),
    "label beyond classes": (["stitch", "--quick", "--images", "{d}/lab", "--out", "{d}/st"], "class index 5000"),
    "malformed labels": (["stitch", "--quick", "--images", "{d}/badlab", "--out", "{d}/st"], "expected a header"),
    "model returns no logits": (["predict", "sample:coffee", "--model", "{d}/nologits.py:build"], "outputs a dict"),
    "model forward fails": (["predict", "sample:coffee", "--model", "{d}/fail.py:build"], "forward pass failed"),
    "weights with code": (["layers", "alexnet", "--weights", "{d}/code.pth"], "contains code"),
    "neuron outside map": (["saliency", "sample:chelsea", "--layer", "stage2", "--channel", "3", "--y", "500",
                            "--out", "{d}/sal"], "outside the"),
    "sanity without classes": (["sanity", "sample:chelsea", "--model", "hog", "--out", "{d}/san"], "has no classes"),
    "class of a HOG": (["maximize", "--class", "volcano", "--model", "hog", "--out", "{d}/pre"], "classifier"),
    "accentuate a HOG class": (["accentuate", "sample:chelsea", "--class", "3", "--model", "hog", "--out", "{d}/pre"],
                               "classifier"),
    "reproduce unknown finding": (["reproduce", "--findings", "telepathy", "--out", "{d}/rep"], "unknown finding"),
    "reproduce unknown transform": (["reproduce", "--transforms", "shear", "--out", "{d}/rep"], "unknown transform"),
    "device unknown": (["predict", "sample:chelsea", "--device", "tpu"], "--device tpu: not a device"),
    "device index bad": (["saliency", "sample:chelsea", "--device", "cuda:x", "--out", "{d}/s"], "not a device"),
    "saliency class of a HOG": (["saliency", "sample:chelsea", "--class", "3", "--model", "hog", "--out", "{d}/sal"],
                                "no classes"),
}


# cases that would allocate gigabytes if their check broke run in a child under an address-space cap (and the
# Ray one, which starts a client); the others call the CLI's main() here, as `python -m cnnscope` does (its
# only other line is sys.exit), which saves the 5 s a new interpreter takes to import torch, 80 times over
IN_A_CHILD = {"absurdly large", "over memory budget", "hog glyphs too big", "hog size too big",
              "invert size too big", "stylize size too big", "texture size too big", "ray unreachable",
              "equivariance over budget", "stitch over budget"}  # (--max-memory would stay set in this process)


def run_here(*args) -> subprocess.CompletedProcess:
    """The CLI in this process: exit code and what it printed (an escaping exception fails the test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own refusals
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_line(files, case):
    args, expected = BAD[case]
    before = _snapshot(files)
    argv = [a.format(d=files) for a in args]
    res = run(*argv, cap_gb=12) if case in IN_A_CHILD else run_here(*argv)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("cnnscope: error:") and expected in lines[0], lines[0]
    assert _snapshot(files) == before  # nothing written or changed, not even a temp file


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*")}


def test_bad_input_table_is_large():
    assert len(BAD) >= 80


def test_predict_layers_activations(tmp_path):
    res = run("predict", "sample:coffee", "sample:chelsea", "--top-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["model"] == "efficientnet_lite0"
    assert data["predictions"][0]["top"][0]["name"] == "espresso"
    assert data["predictions"][1]["top"][0]["name"] in {"tabby", "tiger cat", "Egyptian cat"}

    res = run("layers", "alexnet", "--random-weights", "--layer", "pool5", "--json")
    assert res.returncode == 0, res.stderr
    pool5 = json.loads(res.stdout)["layers"][0]
    assert (pool5["receptive_field"], pool5["stride"], pool5["name"]) == (195, 32, "features.12")

    out = tmp_path / "acts" / "feat.safetensors"
    res = run("activations", "sample:chelsea", "--layer", "stage3", "--layer", "logits", "--out", str(out))
    assert res.returncode == 0, res.stderr
    from safetensors.torch import load_file

    saved = load_file(str(out))
    assert saved["stage3"].shape == (40, 28, 28) and saved["logits"].shape == (1000,)
    assert json.loads(out.with_suffix(".json").read_text())["layers"] == ["stage3", "logits"]
    # (the demo runs from the installed wheel: tests/test_packaging.py)


def test_predict_a_folder_a_chunk_at_a_time(tmp_path, monkeypatch):
    """A folder's pictures are loaded as they are predicted, PREDICT_CHUNK per forward (memory flat over a
    validation set: 100 ImageNet pictures used to hold 1.8 GB, all loaded and in one batch); the table is
    printed at the end, so a file that fails to decode half-way leaves one error line and nothing else."""
    from cnnscope.models import model as model_module

    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):  # sizes differ: each is resized and cropped on its own
        Image.fromarray((rng.random((40 + 9 * i, 70, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    monkeypatch.setattr(model_module, "PREDICT_CHUNK", 2)
    batches = []
    real = model_module.Model._top_k
    monkeypatch.setattr(model_module.Model, "_top_k", lambda self, images, k: batches.append(len(images))
                        or real(self, images, k))
    res = run_here("predict", str(folder), "sample:coffee", "--top-k", "1", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [Path(p["image"]).name for p in data["predictions"]] == [f"p{i}.png" for i in range(5)] + ["sample:coffee"]
    assert batches == [2, 2, 2] and data["predictions"][-1]["top"][0]["name"] == "espresso"
    alone = json.loads(run_here("predict", str(folder / "p3.png"), "--top-k", "1", "--json").stdout)
    assert alone["predictions"][0]["top"][0]["index"] == data["predictions"][3]["top"][0]["index"]

    (folder / "p9.png").write_bytes((folder / "p0.png").read_bytes()[:200])  # a header, then nothing
    res = run_here("predict", str(folder), "--json")
    assert res.returncode == 2 and res.stdout == "" and "p9.png: truncated or corrupt image" in res.stderr


def test_help_lists_verbs():
    res = run("--help")
    assert res.returncode == 0
    for verb in ["models", "layers", "predict", "activations", "demo", "samples"]:
        assert verb in res.stdout


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak memory from /proc")
def test_a_thin_picture_is_cropped_in_its_own_coordinates(tmp_path):
    """An 8x20000 px strip used to be resized whole to 256x640000 px (2.3 GB) before the centre crop: the crop
    box is now found in the strip and only that region is resized (the whole resize's pixels, tested in
    test_images), so the child's peak memory stays near what a 224 px picture needs."""
    Image.fromarray((np.random.default_rng(0).random((8, 20000, 3)) * 255).astype(np.uint8)).save(tmp_path / "t.png")
    # VmHWM, this process's own peak (ru_maxrss would carry over the forking test process's, across exec)
    code = ("import re, sys\nfrom cnnscope.cli import main\ncode = main(sys.argv[1:])\n"
            "print('peak', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "sys.exit(code)")
    res = subprocess.run([sys.executable, "-c", code, "predict", str(tmp_path / "t.png"), "--max-memory", "0.05"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) >= 6  # the top-5 classes, then the peak
    assert int(lines[-1].split()[1]) / 2 ** 20 < 1.5  # GB (VmHWM is in kB)


def test_saliency_of_a_folder_finds_each_pictures_top_class_in_its_job(tmp_path):
    """The default rows (the last stage's code, the top class) are planned without decoding any picture —
    each job finds its picture's top class — so a folder of thousands starts and resumes at once."""
    from cnnscope.backprop.plans import default_rows, plan_saliency
    from cnnscope.models import load_model

    model = load_model("efficientnet_lite0")
    jobs = plan_saliency(model, ["never/decoded.png"], lambda s: default_rows(model))
    assert [t.label() for t in jobs[0].targets] == ["stage7 features", "logits top class"]

    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        save_image(load_image(f"sample:{name}"), folder / f"{name}.png")
    res = run_here("saliency", str(folder), "--method", "salinet", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    for name in ("chelsea", "coffee"):
        record = json.loads((tmp_path / "out" / f"saliency_{name}.json").read_text())
        top = model.predict(load_image(folder / f"{name}.png"), k=1)[0][0].index
        assert [r["target"] for r in record["results"]["rows"]] == ["stage7 features", f"logits class{top}"]
        assert (tmp_path / "out" / f"saliency_{name}_logits_class{top}_salinet.png").is_file()
