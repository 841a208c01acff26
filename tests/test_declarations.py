"""Each verb declared once (issue 38): tests generated from the registry, so a new verb is covered without a new
test file. The CLI and the API take the same words to the same request and plan the same jobs; every default in
`--help` is the signature's; a bad value of any option is one line and exit 2 in the CLI and a CnnscopeError
naming it in the API; help imports no torch."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import subprocess
import sys

import pytest

import cnnscope
from cnnscope.api import FUNCTIONS
from cnnscope.cli import build_parser, default_of, main
from cnnscope.errors import CnnscopeError
from cnnscope.jobs import JobsPlanned, planning
from cnnscope.verbs import (
    API,
    CLI,
    Channels,
    Flag,
    Float,
    Floats3,
    Int,
    ModelRef,
    Names,
    Picture,
    Pictures,
    Text,
    registry,
)

VERBS = registry()
# the words a verb cannot run without (by option name), where the kind's own sample (`_sample`) will not do;
# every other option takes its default
REQUIRED = {
    "predict": {"images": ["sample:chelsea"]}, "activations": {"image": "sample:chelsea", "layer": ["stage2"]},
    "invert": {"image": "sample:chelsea", "layer": "stage2"}, "maximize": {"layer": "stage3", "channels": "0-2"},
    "accentuate": {"image": "sample:coffee", "classes": "tiger cat"}, "caricature": {"image": "sample:coffee",
                                                                                     "layer": "stage2"},
    "texture": {"image": "sample:gravel"}, "style-transfer": {"content": "sample:chelsea", "style": "sample:gravel"},
    "train-texture-net": {"image": "sample:coffee"}, "apply-texture-net": {"net": "net.safetensors"},
    "saliency": {"images": ["sample:chelsea"]}, "sanity": {"image": "sample:chelsea"},
    "hog": {"image": "sample:chelsea"},
}
SAMPLES = {Pictures: ["sample:chelsea"], Picture: "sample:chelsea", Names: "stage2", Channels: "0-2", Int: 2,
           Text: "x"}


def _sample(o):
    value = next(v for cls, v in SAMPLES.items() if isinstance(o.kind, cls))
    return [value] if o.repeat and not isinstance(value, list) else value


def _required(verb) -> dict:
    """The words a verb cannot run without: the table's, else a sample of each required option's kind (and of
    the first option of each group one of which must be given)."""
    if verb.name in REQUIRED:
        return REQUIRED[verb.name]
    chosen = [o for o in verb.options if o.required]
    chosen += [next(o for o in verb.options if o.exclusive == tag) for tag in verb.exclusive_required]
    return {o.name: _sample(o) for o in chosen}


# non-default words per verb whose plan is compared between the doors (small: planning loads the models)
NON_DEFAULT = {
    "invert": {"layer": "stage1,stage3", "restarts": 2, "size": 64, "iters": 3, "recipe": "mv", "tv_beta": 1.5},
    "maximize": {"layer": "stage3", "channels": "1,4", "batch": 2, "diversity": 0.5, "chunk": 1, "size": 64,
                 "where": "channel"},
    "accentuate": {"layer": "stage4", "channels": "3", "classes": None, "anchor_weight": 2.0, "size": 64},
    "caricature": {"cosine": 2.0, "param": "pixel", "jitter": 2},
    "texture": {"scales": 2, "compare_soften": True, "size": 96},
    "style-transfer": {"style_weight": 3.0, "init": "noise", "size": 96},
    "saliency": {"method": "salinet,desalinet", "layer": "stage4", "channel": 5, "render": "abs"},
    "selectivity": {"layer": "stage4", "limit": 2, "neurons": 3},
    "sanity": {"classes": "tabby"},
    "equivariance": {"transform": "hflip", "layers": "stage2", "limit": 8, "ridge": 0.1, "neighbourhood": "1"},
    "stitch": {"layers": "stage2:stage3", "kernel": 3, "epochs": 1, "limit": 8},
    "cka": {"layers": "stem,stage2", "limit": 8, "debiased": True},
    "hog": {"cell_size": 4, "bilinear": True, "orientations": 6},
    "report": {"layers": "stage2", "channels": 2, "quick": True},
    "reproduce": {"findings": "prior,vflip", "quick": True},
}
# verbs whose run trains or writes for minutes: their requests are compared, not their runs
TOO_LONG_TO_RUN = {"train-texture-net", "apply-texture-net", "train-small", "stitch-small", "demo"}


def _cli_words(verb, values: dict) -> list[str]:
    words = [verb.name]
    for name, value in values.items():
        o = verb.option(name)
        items = value if isinstance(value, list) else [value]
        if o.positional:
            words += [str(v) for v in items]
        elif isinstance(o.kind, Flag):
            words += [o.spelling] if value else []
        else:
            for v in items if o.repeat else [value]:
                words += [o.spelling, str(v)]
    return words


def _cli_request(verb, values: dict):
    args = build_parser().parse_args(_cli_words(verb, values))
    return verb.request({o.name: getattr(args, o.name) for o in verb.options}, CLI)


def _same_request(verb, values: dict) -> None:
    cli = _cli_request(verb, values).values()
    api = verb.request(values, API).values()
    cli_out = verb.option("out").cli_default if "out" in cli else None
    if cli_out is not None and "out" not in values:  # the one door default: the API computes in memory
        assert cli["out"] == cli_out and api["out"] is None
        cli["out"] = api["out"] = None
    assert cli == api


def _planned(call) -> list[dict] | object:
    """The settings of the jobs a call plans, or (a verb without jobs) what it returned."""
    with planning(), contextlib.redirect_stdout(io.StringIO()):
        try:
            return call()
        except JobsPlanned as planned:
            return planned.settings


def _plans_agree(verb, values: dict, tmp_path) -> None:
    if verb.name in TOO_LONG_TO_RUN:
        return
    out = {"out": str(tmp_path / "o")} if "out" in {o.name for o in verb.options} else {}
    if "out" in out and verb.name in ("activations", "apply-texture-net", "train-small", "train-texture-net"):
        out = {}
    words = _cli_words(verb, {**values, **out})
    cli = _planned(lambda: main(words + (["--json", "-q"] if verb.json else ["-q"])))
    api = _planned(lambda: FUNCTIONS[verb.api_name](**values, **out)) if verb.api_name else cli
    if isinstance(cli, int):  # ran without jobs: both doors ran to the end
        assert cli == 0
        return
    assert cli == api, f"{verb.name}: the CLI and the API plan different jobs"


@pytest.mark.parametrize("name", sorted(VERBS))
def test_the_cli_and_the_api_read_the_same_words_the_same_way(name):
    verb = VERBS[name]
    _same_request(verb, _required(verb))
    taken = {verb.option(n).exclusive for n in _required(verb)} - {""}
    for o in verb.options:  # one non-default value at a time (exclusive options cannot meet)
        if o.name in _required(verb) or o.exclusive in taken:
            continue
        value = _other_value(o)
        if value is not None:
            _same_request(verb, {**_required(verb), o.name: value})


def _other_value(o):
    """A value of the option's kind that is not its default (None: none to make generically)."""
    k = o.kind
    if isinstance(k, Flag):
        return True
    if isinstance(k, Int):
        return (o.default or k.low) + 2 if not hasattr(k, "high") or k.high is None else k.low
    if isinstance(k, Float):
        return 0.5 if k.fraction else 3.5
    if isinstance(k, Text) and k.choices:
        return next(c for c in k.choices if c != o.default)
    if isinstance(k, Channels):
        return "2-4"
    if isinstance(k, Floats3):
        return None  # (the CLI's text and the API's tuple differ in form: checked by the bad-value test)
    if isinstance(k, (ModelRef, Picture, Names)) or isinstance(k, Text):
        return None if o.repeat or o.nargs else "stage2" if isinstance(k, Names) else None
    return None


@pytest.mark.parametrize("name", sorted(VERBS))
def test_both_doors_plan_the_same_jobs_with_defaults_and_with_other_values(name, tmp_path):
    verb = VERBS[name]
    _plans_agree(verb, _required(verb), tmp_path / "defaults")
    if name in NON_DEFAULT:
        values = {k: v for k, v in {**_required(verb), **NON_DEFAULT[name]}.items() if v is not None}
        _plans_agree(verb, values, tmp_path / "other")


@pytest.mark.parametrize("name", sorted(VERBS))
def test_every_default_in_help_is_the_signature_default(name):
    verb = VERBS[name]
    parser = build_parser()._subparsers._group_actions[0].choices[name]
    actions = {a.dest: a for a in parser._actions}
    text = "".join(parser.format_help().split())  # (argparse wraps lines at spaces and hyphens)
    sig = inspect.signature(FUNCTIONS[verb.api_name]) if verb.api_name else None
    for o in verb.options:
        shown = default_of(o)
        assert actions[o.name].default == shown, f"{name} {o.spelling}"
        if shown is not None and not isinstance(o.kind, Flag):
            assert f"(default{shown})".replace(" ", "") in text, f"{name} {o.spelling}: its default is not in --help"
        if sig is not None:
            api_default = sig.parameters[o.name].default
            assert api_default == (o.default if o.cli_default is None else None)
            assert shown == api_default or (o.name == "out" and api_default is None)
    if sig is not None:  # help(cnnscope.VERB) names every option as the CLI spells it
        doc = FUNCTIONS[verb.api_name].__doc__
        for o in verb.options:
            assert f"{o.name} :" in doc and f"``{o.spelling}``" in doc


BAD_CLI = {Int: "x", Float: "nan", Channels: "3-1", Floats3: "1,2"}
BAD_API = {Int: "3", Float: float("inf"), Channels: [-1], Floats3: (1, 2), Flag: "yes", Text: 42, Names: 3.5,
           ModelRef: 3, Picture: 3}


def _bad(table: dict, kind):
    for cls, value in table.items():
        if isinstance(kind, cls):
            return value
    return None


@pytest.mark.parametrize("name", sorted(VERBS))
def test_a_bad_value_of_any_option_is_one_line_in_the_cli_and_a_named_error_in_the_api(name, capsys):
    verb = VERBS[name]
    required = _required(verb)
    for o in verb.options:
        bad = _bad(BAD_CLI, o.kind)
        if bad is not None and not o.positional:
            words = _cli_words(verb, required) + [o.spelling, bad]
            with pytest.raises(SystemExit) as stop:
                main(words)
            err = capsys.readouterr().err
            assert stop.value.code == 2 and err.startswith("cnnscope: error:") and err.count("\n") == 1, words
            assert o.spelling in err, err
        if verb.api_name:
            bad = _bad(BAD_API, o.kind) if not isinstance(o.kind, Text) or not o.kind.choices else "bogus"
            if bad is None:
                continue
            with pytest.raises(CnnscopeError) as err:
                FUNCTIONS[verb.api_name](**{**required, o.name: bad})
            assert o.name in str(err.value), (name, o.name, str(err.value))


def test_unknown_keywords_and_wrong_positional_counts_are_cnnscope_errors():
    with pytest.raises(CnnscopeError, match="unexpected keyword argument 'iter'"):
        cnnscope.invert("efficientnet_lite0", "sample:chelsea", "stage2", iter=3)
    with pytest.raises(CnnscopeError, match="hog"):
        cnnscope.hog("sample:chelsea", 8)
    with pytest.raises(CnnscopeError, match="model"):
        cnnscope.predict(object(), "sample:chelsea")


# small runs of every --json verb (reproduce's --quick takes minutes: its JSON goes the same way as the others')
QUICK_RUNS = {"invert": {"layer": "stage1", "size": 64, "iters": 2}, "maximize": {"size": 64, "iters": 2},
              "accentuate": {"size": 64, "iters": 2}, "caricature": {"size": 64, "iters": 2},
              "selectivity": {"layer": "stage3", "limit": 2, "neurons": 2},
              "equivariance": {"layers": "stem", "limit": 8, "neighbourhood": "1"},
              "stitch": {"b": "efficientnet_lite0", "layers": "stem", "limit": 8, "epochs": 0},
              "cka": {"b": "efficientnet_lite0", "layers": "stem,stage1", "limit": 4}}


@pytest.mark.parametrize("name", sorted(n for n, v in VERBS.items() if v.json and n != "reproduce"))
def test_quiet_json_prints_the_json_and_quiet_alone_prints_nothing(name, capsys, tmp_path):
    verb = VERBS[name]
    values = {**_required(verb), **QUICK_RUNS.get(name, {})}
    folder = any(o.name == "out" and o.default is None for o in verb.options) and name != "activations"
    out = ["--out", str(tmp_path / "out")] if folder else []
    words = _cli_words(verb, values) + out
    assert main(words + ["-q", "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out) and printed.err == ""
    assert main(words + ["-q"]) == 0  # (reuses the finished jobs)
    assert capsys.readouterr() == ("", "")


def test_every_verb_has_an_api_function_and_the_choices_match_the_science():
    from cnnscope.backprop.methods import METHODS
    from cnnscope.backprop.rules import POOL_RULES
    from cnnscope.backprop.verbs import METHOD_NAMES, POOL_RULE_NAMES
    from cnnscope.preimage.param import PARAMS
    from cnnscope.preimage.recipes import GRAM_RECIPES, RECIPES
    from cnnscope.report.findings import FINDINGS
    from cnnscope.report.verbs import FINDING_NAMES
    from cnnscope.verbs import PARAM_NAMES, RECIPE_NAMES

    cli_only = {n for n, v in VERBS.items() if not v.api_name}
    assert cli_only == {"demo", "samples"}
    for verb in VERBS.values():
        if verb.api_name:
            assert getattr(cnnscope, verb.api_name) is FUNCTIONS[verb.api_name]
    assert set(METHOD_NAMES) == set(METHODS) and set(POOL_RULE_NAMES) == set(POOL_RULES)
    assert set(PARAM_NAMES) == set(PARAMS) and set(RECIPE_NAMES) == set(RECIPES) - set(GRAM_RECIPES)
    assert FINDING_NAMES == FINDINGS


def test_help_imports_no_torch():
    code = ("import sys\nfrom cnnscope.cli import build_parser\np = build_parser()\n"
            "p._subparsers._group_actions[0].choices['invert'].format_help()\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_old_spellings_still_run_with_a_notice(tmp_path, capsys):
    assert main(["style", "sample:chelsea", "sample:gravel", "--size", "64", "--iters", "2", "--out",
                 str(tmp_path)]) == 0
    assert "'style' is now 'style-transfer'" in capsys.readouterr().err


USER_NET = '''
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
'''


@pytest.mark.parametrize("kind", ["hog", "user"])
@pytest.mark.parametrize("name", sorted(n for n, v in VERBS.items() if "model" in {o.name for o in v.options}
                                        and n not in TOO_LONG_TO_RUN and v.api_name))
def test_every_model_kind_gets_the_same_answer_from_both_doors(name, kind, tmp_path):
    """HOG and your own network (file.py:factory) as the model: both doors plan the same jobs, or both refuse."""
    verb = VERBS[name]
    if kind == "user":
        (tmp_path / "net.py").write_text(USER_NET)
        model = {"model": f"{tmp_path / 'net.py'}:build", "input_size": 32, "random_weights": True}
    else:
        model = {"model": "hog"}
    values = {k: v for k, v in _required(verb).items() if verb.option(k).required or k not in ("layer", "layers")}
    values |= model
    try:
        cli = ("done", _planned(lambda: main(_cli_words(verb, values) + ["-q"])))
    except SystemExit as stop:  # refused by argparse
        cli = ("done", stop.code)
    try:
        api = ("done", _planned(lambda: FUNCTIONS[verb.api_name](**values)))
    except CnnscopeError:
        api = ("refused", None)
    if cli == ("done", 2):  # the CLI refused in one line (exit 2): the API must refuse too
        assert api[0] == "refused", f"{name} with {kind}: the CLI refused, the API did not"
    elif isinstance(cli[1], list):
        assert api == cli, f"{name} with {kind}: the doors plan different jobs"
    else:
        assert cli == ("done", 0) and api[0] == "done", (name, kind, cli, api[0])


def test_the_api_with_an_output_folder_runs_as_the_cli_and_returns_its_json(tmp_path, capsys):
    """Without `out`: typed results computed in memory; with it: the CLI's files, resumable, and its --json."""
    in_memory = cnnscope.hog("sample:chelsea", size=64)
    assert isinstance(in_memory, cnnscope.Result) and in_memory.features_shape[0] == 31
    record = cnnscope.hog("sample:chelsea", size=64, out=tmp_path / "api")
    assert main(["hog", "sample:chelsea", "--size", "64", "--out", str(tmp_path / "cli"), "-q"]) == 0
    assert record == json.loads((tmp_path / "cli" / "hog_chelsea.json").read_text())["results"]
    assert (tmp_path / "api" / "hog_chelsea.png").read_bytes() == (tmp_path / "cli" / "hog_chelsea.png").read_bytes()
    with pytest.raises(CnnscopeError, match="workers and ray need an output folder"):
        cnnscope.invert("efficientnet_lite0", "sample:chelsea", "stem,stage1", size=64, iters=2, workers=2)
    many = [str(tmp_path / "many")]
    (tmp_path / "many").mkdir()
    for i in range(257):
        (tmp_path / "many" / f"{i}.png").write_bytes((tmp_path / "cli" / "hog_chelsea.png").read_bytes())
    with pytest.raises(CnnscopeError, match="257 jobs would all be kept in memory"):
        cnnscope.saliency("efficientnet_lite0", many)
