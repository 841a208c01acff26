"""One front door per verb (issue 25): the Python API and the CLI plan their jobs in the same place, so the
same arguments write the same files, byte for byte (each job's pictures and its JSON record)."""

import contextlib
import io
from pathlib import Path

import pytest

import cnnscope
from cnnscope.cli import main

MODEL = "efficientnet_lite0"


def _cli(*args) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert code == 0, err.getvalue()


def _saved(results, folder: Path) -> dict[str, bytes]:
    files = {}
    for r in results if isinstance(results, list) else [results]:
        for name in r.save(folder):
            files[name] = (folder / name).read_bytes()
        files[f"{r.job.key}.json"] = (folder / f"{r.job.key}.json").read_bytes()
    return files


def _same(api: dict[str, bytes], cli_folder: Path) -> None:
    assert api, "the API wrote nothing"
    for name, data in api.items():
        assert (cli_folder / name).is_file(), f"the CLI did not write {name}"
        assert (cli_folder / name).read_bytes() == data, f"{name} differs between the API and the CLI"


@pytest.mark.parametrize("joint", [False, True])
def test_invert_several_layers_means_the_same_in_both_doors(tmp_path, joint):
    extra = ["--joint"] if joint else []
    _cli("invert", "sample:chelsea", "--layer", "stage1,stage2", "--size", "64", "--iters", "3", *extra,
         "--out", str(tmp_path / "cli"))
    results = cnnscope.invert(MODEL, "sample:chelsea", ["stage1", "stage2"], size=64, iters=3, joint=joint)
    assert isinstance(results, cnnscope.api.InvertResult) == joint  # one joint picture, or one per layer
    _same(_saved(results, tmp_path / "api"), tmp_path / "cli")


def test_maximize_and_caricature_write_the_same_files(tmp_path):
    _cli("maximize", "--layer", "stage3", "--channel", "0-2", "--chunk", "2", "--size", "64", "--iters", "3",
         "--out", str(tmp_path / "cli"))
    results = cnnscope.maximize(MODEL, "stage3", [0, 1, 2], chunk=2, size=64, iters=3)
    assert len(results) == 2  # two chunks, as the CLI's --chunk 2
    _same(_saved(results, tmp_path / "api"), tmp_path / "cli")
    _cli("caricature", "sample:coffee", "--layer", "stage2", "--size", "64", "--iters", "3",
         "--out", str(tmp_path / "cli2"))
    _same(_saved(cnnscope.caricature(MODEL, "sample:coffee", "stage2", size=64, iters=3), tmp_path / "api2"),
          tmp_path / "cli2")


def test_every_maximize_and_caricature_option_has_its_keyword(tmp_path):
    """The CLI's --y/--x, --batch with --diversity/--diversity-layer and caricature's --cosine, as keywords."""
    _cli("maximize", "--layer", "stage3", "--channel", "1", "--y", "2", "--x", "5", "--batch", "2", "--diversity",
         "0.5", "--diversity-layer", "stage2", "--size", "64", "--iters", "3", "--out", str(tmp_path / "cli"))
    result = cnnscope.maximize(MODEL, "stage3", 1, y=2, x=5, batch=2, diversity=0.5, diversity_layer="stage2",
                               size=64, iters=3)
    assert result.job.targets[0].label() == "neuron1@2,5" and result.tensors.shape[0] == 2
    _same(_saved(result, tmp_path / "api"), tmp_path / "cli")
    _cli("caricature", "sample:coffee", "--layer", "stage2", "--cosine", "2", "--size", "64", "--iters", "3",
         "--out", str(tmp_path / "cli2"))
    _same(_saved(cnnscope.caricature(MODEL, "sample:coffee", "stage2", cosine=2, size=64, iters=3),
                 tmp_path / "api2"), tmp_path / "cli2")


def test_backprop_verbs_write_the_same_files(tmp_path):
    _cli("saliency", "sample:chelsea", "--out", str(tmp_path / "cli"))
    _same(_saved(cnnscope.saliency(MODEL, "sample:chelsea"), tmp_path / "api"), tmp_path / "cli")
    _cli("selectivity", "--limit", "2", "--neurons", "2", "--layer", "stage4", "--out", str(tmp_path / "cli2"))
    _same(_saved(cnnscope.selectivity(MODEL, "stage4", limit=2, neurons=2), tmp_path / "api2"), tmp_path / "cli2")


def test_transformation_and_texture_verbs_write_the_same_files(tmp_path):
    _cli("equivariance", "--transform", "hflip", "--layers", "stage2", "--limit", "8", "--out", str(tmp_path / "eq"))
    _same(_saved(cnnscope.equivariance(MODEL, "stage2", "hflip", limit=8), tmp_path / "eq_api"), tmp_path / "eq")
    _cli("stitch", "--a", MODEL, "--b", MODEL, "--layers", "stage2", "--limit", "8", "--epochs", "0",
         "--out", str(tmp_path / "st"))
    _same(_saved(cnnscope.stitch(MODEL, MODEL, "stage2", limit=8, epochs=0), tmp_path / "st_api"), tmp_path / "st")
    _cli("cka", "--a", MODEL, "--b", MODEL, "--layers", "stage1,stage2", "--limit", "4", "--out", str(tmp_path / "ck"))
    _same(_saved(cnnscope.cka(MODEL, MODEL, ["stage1", "stage2"], limit=4), tmp_path / "ck_api"), tmp_path / "ck")
    _cli("texture", "sample:brick", "--size", "64", "--iters", "3", "--style-layers", "stage1",
         "--out", str(tmp_path / "tx"))
    texture = cnnscope.texture(MODEL, "sample:brick", size=64, iters=3, style_layers=["stage1"])
    _same(_saved(texture, tmp_path / "tx_api"), tmp_path / "tx")
    _cli("hog", "sample:chelsea", "--size", "64", "--out", str(tmp_path / "hog"))
    _same(_saved(cnnscope.hog("sample:chelsea", size=64), tmp_path / "hog_api"), tmp_path / "hog")


def test_accentuate_style_and_sanity_write_the_same_files(tmp_path):
    _cli("accentuate", "sample:chelsea", "--layer", "stage3", "--channel", "0-1", "--size", "64", "--iters", "3",
         "--out", str(tmp_path / "ac"))
    _same(_saved(cnnscope.accentuate(MODEL, "sample:chelsea", "stage3", [0, 1], size=64, iters=3), tmp_path / "ac_api"),
          tmp_path / "ac")
    _cli("style-transfer", "sample:chelsea", "sample:brick", "--size", "64", "--iters", "3", "--style-layers", "stage1",
         "--out", str(tmp_path / "sy"))
    result = cnnscope.style_transfer(MODEL, "sample:chelsea", "sample:brick", size=64, iters=3, style_layers=["stage1"])
    _same(_saved(result, tmp_path / "sy_api"), tmp_path / "sy")
    _cli("sanity", "sample:coffee", "--out", str(tmp_path / "sa"))
    _same(_saved(cnnscope.sanity(MODEL, "sample:coffee"), tmp_path / "sa_api"), tmp_path / "sa")


@pytest.mark.parametrize("argv, call", [
    (["equivariance", "--fit", "1.5"], lambda: cnnscope.equivariance(MODEL, "stage2", fit=1.5)),
    (["equivariance", "--neighbourhood", "2"], lambda: cnnscope.equivariance(MODEL, "stage2", neighbourhood=[2])),
    (["stitch", "--epochs", "-1"], lambda: cnnscope.stitch(MODEL, MODEL, "stage2", epochs=-1)),
    (["selectivity", "--neurons", "1"], lambda: cnnscope.selectivity(MODEL, "stage4", neurons=1)),
    (["hog", "sample:chelsea", "--cell-size", "1"], lambda: cnnscope.hog("sample:chelsea", cell_size=1)),
    (["invert", "sample:chelsea", "--layer", "stage2", "--data-weight", "-1"],
     lambda: cnnscope.invert(MODEL, "sample:chelsea", "stage2", data_weight=-1)),
])
def test_both_doors_refuse_a_bad_number_with_the_same_words(argv, call, tmp_path, capsys):
    with pytest.raises(cnnscope.CnnscopeError) as err:
        call()
    words = str(err.value).partition(": ")[2].partition(", got")[0]  # "expected …" after the keyword's name
    assert words.startswith("expected ")
    try:
        code = main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as exit_:  # (refused by argparse, before any work)
        code = exit_.code
    assert code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_keywords_are_the_cli_options(tmp_path):
    """`cnnscope.report` takes every option of ``cnnscope report`` (one run function builds the settings for
    both): the same units, byte for byte."""
    options = {"layers": "stem", "channels": "2", "iters": "3", "size": "64", "examples": "1", "patch-images": "2",
               "equivariance": "hflip"}
    argv = [x for k, v in options.items() for x in (f"--{k}", v)]
    _cli("report", MODEL, *argv, "--out", str(tmp_path / "cli"))
    result = cnnscope.report(MODEL, tmp_path / "api", layers="stem", channels=2, iters=3, size=64, examples=1,
                             patch_images=2, equivariance="hflip")
    assert result.computed == 6  # 1 inversion, 2 atlas channels, patches, 1 backprop strip, equivariance

    def units(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.suffix in (".png", ".safetensors") and p.name != "screenshot.png"}

    assert units(tmp_path / "api") == units(tmp_path / "cli") and len(units(tmp_path / "cli")) >= 5
    with pytest.raises(cnnscope.CnnscopeError, match="unknown transform"):
        cnnscope.report(MODEL, tmp_path / "bad", layers="stem", equivariance="shear")
    assert not (tmp_path / "bad").exists()
