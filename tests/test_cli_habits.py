"""CLI habits: an example in every --help, --quiet, --json, plain progress lines off a terminal, rounded CSVs."""

import argparse
import inspect
import json
import shlex

import pytest

import cnnscope
from cnnscope import progress
from cnnscope.cli import build_parser, main
from cnnscope.store import write_csv
from cnnscope.verbs import registry


def _verbs(parser) -> dict:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_verb_has_an_example_that_parses():
    parser = build_parser()
    verbs = _verbs(parser)
    declared = registry()
    assert set(verbs) == set(declared) | {old for v in declared.values() for old in v.formerly}
    for verb, declaration in declared.items():
        example = declaration.example
        args = parser.parse_args(shlex.split(example)[1:])
        assert args.command == verb, example
        assert f"example:\n  {example}" in verbs[verb].format_help()
        assert ("--json" in verbs[verb].format_help()) == declaration.json
        assert "--quiet" in verbs[verb].format_help()


def test_quiet_prints_nothing_and_json_prints_only_the_table(capsys, tmp_path):
    assert main(["predict", "sample:coffee", "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert main(["cka", "--a", "efficientnet_lite0", "--b", "efficientnet_lite0", "--layers", "stage1,stage2",
                 "--limit", "4", "--out", str(tmp_path / "cka"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)  # nothing but the JSON document on stdout
    assert data["layers_a"] == ["stage1", "stage2"] and data["cka"][0][0] == pytest.approx(1.0, abs=1e-5)
    assert main(["predict", "sample:nope", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnscope: error: unknown sample") and err.count("\n") == 1  # errors still show


def test_progress_off_a_terminal_is_one_plain_line_per_unit(capsys):
    progress.set_verbosity(progress.NORMAL)
    with progress.units(3, "invert") as bar:
        for i in range(3):
            bar.update(1, note=f"job{i}")
    with progress.steps(100, "solve") as bar:
        for _ in range(100):
            bar.update(1)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 3  # the inner loop is silent unless verbose
    assert lines[0].startswith("invert: 1/3 jobs done (") and "ETA" in lines[0] and lines[0].endswith("job0")
    assert "ETA" not in lines[2]
    progress.set_verbosity(progress.VERBOSE)
    try:
        with progress.steps(100, "solve") as bar:
            for _ in range(100):
                bar.update(1)
    finally:
        progress.set_verbosity(progress.NORMAL)
    assert len(capsys.readouterr().err.splitlines()) == 10  # verbose: a line every tenth
    progress.set_verbosity(progress.QUIET)
    try:
        with progress.units(3, "invert") as bar:
            bar.update(3)
    finally:
        progress.set_verbosity(progress.NORMAL)
    assert capsys.readouterr().err == ""


def test_csv_numbers_are_rounded_to_what_they_measure(tmp_path):
    path = write_csv(["layer", "error", "n"], [["stem", 0.10999999940395355, 40], {"layer": "head", "error": None,
                                                                                   "n": 40}], tmp_path / "t.csv")
    assert path.read_text() == "layer,error,n\nstem,0.11,40\nhead,,40\n"


def test_public_names_are_documented():
    for name in cnnscope.__all__:
        doc = getattr(cnnscope, name).__doc__ or ""
        assert len(doc.strip()) > 20, name
    for name in cnnscope.api.__all__:
        obj = getattr(cnnscope.api, name)
        if callable(obj) and not isinstance(obj, type) and name != "as_model":
            assert "Returns\n-------" in inspect.cleandoc(obj.__doc__), name
