"""Success paths of the verbs no other test file covers, each asserting what it printed or wrote."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from cnnscope.cli import main
from cnnscope.report import findings as findings_module  # (`cnnscope.report` is the top-level call)


def test_models_and_samples(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["efficientnet_lite0"]["weights"] == "installed" and rows["hog"]["input_size"] == 224
    assert main(["samples"]) == 0
    assert {"sample:chelsea", "sample:gravel", "sample:coffee"} <= set(capsys.readouterr().out.split())


def test_backprop_prints_the_reversed_network(capsys):
    assert main(["backprop", "--method", "desalinet"]) == 0
    out = capsys.readouterr().out
    assert "guided: forward gain max(f'(x), 0) AND rectified backward signal" in out  # every ReLU6 of Lite0
    assert "convolution transposed" in out and out.index("logits") < out.index("stem")  # backward order


def test_selectivity_writes_the_seed_finding(tmp_path, capsys):
    assert main(["selectivity", "--limit", "2", "--neurons", "2", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "selectivity.json").read_text())
    c = record["results"]["correlations"]
    assert record["results"]["count"] == 2 and record["settings"]["layer"] == "stage7"
    # DeConvNet maps hardly depend on the neuron; SaliNet's do (Mahendran & Vedaldi ECCV'16)
    assert c["deconvnet"]["max_vs_random_neuron"] > c["salinet"]["max_vs_random_neuron"] + 0.3
    assert "deconvnet" in capsys.readouterr().out


def test_sanity_curve_falls_for_the_gradient(tmp_path):
    assert main(["sanity", "sample:coffee", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "sanity.json").read_text())
    r = record["results"]
    assert r["target"] == "logits class967" and len(r["spearman"]["salinet"]) == len(r["blocks"])
    # the gradient map must stop resembling the trained one once the weights are random (Adebayo et al.)
    assert r["spearman"]["salinet"][-1] < 0.5
    picture = np.asarray(Image.open(tmp_path / "sanity.png"))
    assert picture.shape[0] > 100 and picture.std() > 10  # a drawn figure, not a blank canvas


def test_style_transfer_lowers_the_gram_loss(tmp_path):
    assert main(["style-transfer", "sample:chelsea", "sample:gravel", "--size", "64", "--iters", "15", "--style-layers",
                 "stem,_blocks.1._act0", "--content-layer", "stage1", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "style_efficientnet_lite0_chelsea_gravel.json").read_text())
    r = record["results"]
    assert r["gram_total_after"] < 0.5 * r["gram_total_before"] and r["iterations"] == 15
    picture = np.asarray(Image.open(tmp_path / record["files"][0]))
    assert picture.shape == (64, 64, 3)


def test_reproduce_quick_gives_findings_with_verdicts(tmp_path, capsys):
    from cnnscope.report.findings import DEFAULT, VERDICTS

    assert main(["reproduce", "--quick", "--workers", "2", "--out", str(tmp_path)]) == 0
    findings = json.loads((tmp_path / "findings.json").read_text())
    assert [f["id"] for f in findings] == list(DEFAULT)
    schema = json.loads((Path(findings_module.__file__).parent / "findings.schema.json").read_text())
    jsonschema.validate(findings, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{**findings[0], "verdict": "probably"}], schema)
    for f in findings:  # the schema
        assert set(f) == {"id", "claim", "measured", "expected", "verdict", "n_images", "note"}
        assert f["verdict"] in VERDICTS and isinstance(f["measured"], dict) and f["n_images"] >= 1
        assert (tmp_path / f"{f['id']}.csv").read_text().startswith("measure,value")
    by_id = {f["id"]: f for f in findings}
    # the seed's backprop findings hold on the bundled samples
    assert by_id["deconvnet-selectivity"]["verdict"] == "holds"
    info = by_id["deconvnet-image-information"]
    assert info["verdict"] == "holds" and info["measured"]["without_max_pool"]["correlation"] > 0.99
    assert info["measured"]["with_max_pool"]["correlation"] < 0.5
    assert "holds" in (tmp_path / "findings.html").read_text()
    # the transformation findings measure what they say (bundled samples: no labels, so agreement)
    assert by_id["vflip"]["measured"]["metric"] == "disagreement_with_reference"
    assert [r["layer"] for r in by_id["vflip"]["measured"]["rows"]] == ["stem", "stage4", "stage6"]
    for row in by_id["vflip"]["measured"]["rows"]:  # three fit/test splits, the map's form and fit size said
        assert len(row["splits"]) == 3 and row["learned_spread"][0] <= row["learned"] <= row["learned_spread"][1]
        assert row["map"] in ("spatial inverse only", "1x1 conv", "3x3 conv") and row["fit_positions"] > 0
    for row in by_id["invariance"]["measured"]["rows"]:
        assert row["hflip_null_invariant"] == 0 and row["vflip_null_invariant"] == 0
    stitching = by_id["stitching"]["measured"]
    assert stitching["b"] == "efficientnet_lite1" and stitching["b_alone"] == 0.0
    assert all(r["regression"] < r["naive"] for r in stitching["rows"][:1])
    seeds = by_id["seeds"]["measured"]
    assert seeds["before_training"]["rows"][0]["relative_to_b"] is None  # an untrained B has no skill to keep
    assert all(0 < r["cka_p"] <= 1 for r in seeds["after_training"]["rows"])
    assert len(by_id["data"]["measured"]["rows"]) == 4
    out = capsys.readouterr().out
    assert "deconvnet-selectivity" in out and "wrote" in out
    assert "the bundled samples have no labels; vflip, stitching measure disagreement" in out


def test_reproduce_says_what_an_unlabelled_folder_changes(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(folder / f"photo{i}.png")
    out = tmp_path / "out"
    assert main(["reproduce", "--quick", "--images", str(folder), "--findings", "stitching", "--model",
                 "efficientnet_lite2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped stitching: needs a second network trained on the same task" in printed
    assert f"note: {folder} has no labels.csv; stitching measure disagreement" in printed
    assert json.loads((out / "findings.json").read_text()) == []


def test_equivariance_findings_judge_enough_test_pictures_over_their_splits():
    from cnnscope.report.transform_findings import JUDGED, splits_for

    # three splits of 40 test pictures on 100 images; one from 300 images (120 test pictures) on
    assert [splits_for(n) for n in (4, 40, 41, 60, 119, 120, 200, 2000)] == [3, 3, 3, 2, 2, 1, 1, 1]
    assert all(splits_for(n) * n >= JUDGED or splits_for(n) == 3 for n in range(1, 500))
