"""Each verb declared once: its options (name, type, default, range or choices, one line of help), what it
returns and the function that runs it. The CLI (`cnnscope.cli`) and the Python API (`cnnscope.api`) are both
made from these declarations, so the two doors take the same words, defaults and checks and run the same code.

A family declares its verbs in its own ``verbs`` module (``cnnscope/preimage/verbs.py``, …) and runs them in
its ``commands`` module. This module and the declarations import no torch: ``cnnscope --help`` is quick, and
a verb's science is imported only when it runs.

The path of one request: a `Verb` -> `Verb.request` (every value checked once, naming the option in the door's
spelling) -> `Request` -> the verb's run function (`Verb.runner`) -> an `Answer`: the CLI prints its table
(``--json``: its ``data``) and the API returns its ``value``.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from .errors import CnnscopeError, unknown

CLI, API = "cli", "api"


# ------------------------------------------------------------------------------------------------- kinds
def refuse(name: str, expected: str, value) -> CnnscopeError:
    """"NAME: expected …, got …" (without NAME when empty: argparse names the option itself)."""
    return CnnscopeError(f"{name + ': ' if name else ''}expected {expected}, got {value!r}")


class Kind:
    """How one option's value is read from the command line (`parse`) and checked in both doors (`check`).
    `check` returns the value in the one form the run function reads, or raises a `CnnscopeError` that names
    the option (``name`` is the door's spelling: ``--iters`` or ``iters``)."""

    what = "a value"  # "expected …" in messages
    metavar: str | None = None
    type_name = "str"  # the numpy docstring's type

    def parse(self, text: str):
        return text

    def check(self, value, name: str):
        return value


class Int(Kind):
    """A whole number >= `low` (bools and floats refused: 2.5 iterations is a mistake, not 2)."""

    type_name = "int"

    def __init__(self, low: int = 1):
        self.low = low
        self.what = {0: "an integer >= 0", 1: "a positive integer"}.get(low, f"an integer >= {low}")

    def parse(self, text):
        return int(text)

    def check(self, value, name):
        if isinstance(value, bool) or not isinstance(value, int) or value < self.low:
            raise refuse(name, self.what, value)
        return int(value)


class Odd(Int):
    """A map's m x m support: 1, 3, 5… (up to `high` when given)."""

    def __init__(self, high: int | None = None):
        super().__init__()
        self.high = high
        self.what = "an odd size (1, 3, 5…)" + (f" up to {high}" if high is not None else "")

    def check(self, value, name):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0 or (
                self.high is not None and value > self.high):
            raise refuse(name, self.what, value)
        return value


class Float(Kind):
    """A finite number, >= `low` (> `low` when `strict`) when a bound is given, or a fraction in (0, 1)."""

    type_name = "float"

    def __init__(self, low: float | None = None, strict: bool = False, fraction: bool = False):
        self.low, self.strict, self.fraction = low, strict, fraction
        self.what = "a number"

    def parse(self, text):
        return float(text)

    def check(self, value, name):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise refuse(name, "a finite number", value)
        if self.fraction and not 0 < value < 1:
            raise refuse(name, "a fraction between 0 and 1", value)
        low = self.low
        if low is not None and (value <= low if self.strict else value < low):
            raise refuse(name, f"a number {'>' if self.strict else '>='} {low:g}", value)
        return float(value)


class Flag(Kind):
    what, type_name = "True or False", "bool"

    def check(self, value, name):
        if not isinstance(value, bool):
            raise refuse(name, self.what, value)
        return value


class Text(Kind):
    """Text, optionally one of `choices`."""

    def __init__(self, choices: Sequence[str] | None = None, metavar: str | None = None, what: str = "text"):
        self.choices, self.metavar = tuple(choices) if choices else None, metavar
        self.what = what
        if self.choices:
            self.type_name = "{" + ", ".join(repr(c) for c in self.choices) + "}"

    def check(self, value, name):
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(value, str):
            raise refuse(name, self.what if not self.choices else f"one of {', '.join(self.choices)}", value)
        if self.choices and value not in self.choices:
            raise unknown(name, value, self.choices)
        return value


class Names(Kind):
    """Names (layers, classes, ids): comma-separated text on the command line, text or a list in Python; the
    run function reads the comma-separated text."""

    type_name = "str or list of str"

    def __init__(self, metavar: str = "NAME[,NAME…]", what: str = "a name or a list of names", ints: bool = False):
        self.metavar, self.what, self.ints = metavar, what, ints
        if ints:
            self.type_name = "int, str or list"

    def check(self, value, name):
        if isinstance(value, str):
            return value
        if self.ints and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, Sequence) and value and all(
                isinstance(v, str) or (self.ints and isinstance(v, int) and not isinstance(v, bool)) for v in value):
            return ",".join(str(v) for v in value)
        raise refuse(name, self.what, value)


class Channels(Kind):
    """Channel indices: ``3``, ``0-15`` or ``1,5,9`` on the command line; an int, a list of ints or such text
    in Python. Read as a tuple of ints."""

    what, metavar, type_name = "channels like 3, 0-15 or 1,5,9", "K[,K2|a-b]", "int, list of int or str"

    def check(self, value, name):
        if isinstance(value, str):
            out: list[int] = []
            for part in (p.strip() for p in value.split(",")):
                m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
                if not m or int(m.group(2) or m.group(1)) < int(m.group(1)):
                    raise refuse(name, self.what, value)
                out += range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1)
            return tuple(out)
        values = [value] if isinstance(value, int) else value
        if isinstance(values, Sequence) and values and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            return tuple(int(v) for v in values)
        raise refuse(name, self.what, value)


class Floats3(Kind):
    what, metavar, type_name = "3 finite numbers (R,G,B)", "R,G,B", "tuple of 3 float"

    def parse(self, text):
        return tuple(float(v) for v in text.split(","))

    def check(self, value, name):
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            return tuple(float(v) for v in value)
        raise refuse(name, self.what, value)


class Workers(Int):
    def check(self, value, name):
        value = super().check(value, name)
        cores = os.cpu_count() or 1
        if value > 4 * cores:
            raise CnnscopeError(f"{name}: {value} workers on a machine with {cores} cores (at most {4 * cores})")
        return value


class RayAddress(Text):
    def __init__(self):
        super().__init__(metavar="ADDRESS", what="'local', 'auto', HOST:PORT or ray://HOST:PORT")

    def check(self, value, name):
        value = super().check(value, name)
        if value in ("local", "auto") or re.fullmatch(r"(ray://)?[\w.-]+:\d{1,5}", value):
            return value
        raise refuse(name, self.what, value)


def _is_instance(value, module: str, cls: str) -> bool:
    """isinstance against a class of a module only when that module is loaded (an object of it cannot exist
    otherwise): the declarations import no torch."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(value, getattr(mod, cls))


class ModelRef(Kind):
    """A model: a zoo name, ``file.py:factory`` or a TorchScript file on the command line; in Python also a
    `cnnscope.Model` or any ``torch.nn.Module`` (analysed as a frozen copy)."""

    what, metavar, type_name = "a model name, a cnnscope Model or a torch nn.Module", "MODEL", "str, Model or nn.Module"

    def check(self, value, name):
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        if _is_instance(value, "torch.nn", "Module") or _is_instance(value, "cnnscope.models.model", "Model"):
            return value
        raise refuse(name, self.what, type(value).__name__)


class Picture(Kind):
    """A picture: a file or ``sample:NAME`` on the command line; in Python also a PIL image, a numpy HxWxC
    array or a tensor [3,H,W]."""

    what, metavar, type_name = "a picture (a path, sample:NAME, PIL image, array or tensor)", "IMAGE", \
        "path, sample:NAME, PIL image, array or tensor"

    def check(self, value, name):
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        if (_is_instance(value, "PIL.Image", "Image") or _is_instance(value, "numpy", "ndarray")
                or _is_instance(value, "torch", "Tensor")):
            return value
        raise refuse(name, self.what, type(value).__name__)


class Pictures(Picture):
    """One or more pictures (files, folders of pictures, samples); a list in Python, or a batch tensor."""

    type_name = "picture or list of pictures"

    def check(self, value, name):
        if isinstance(value, (list, tuple)):
            if not value:
                raise refuse(name, "at least one picture", value)
            return [Picture.check(self, v, name) for v in value]
        return Picture.check(self, value, name)


# -------------------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Option:
    """One option of a verb. `name` is its Python keyword and the request's attribute; the CLI spells it
    `flag` (default ``--name-with-dashes``; ``""``: a positional argument)."""

    name: str
    kind: Kind = field(default_factory=Text)
    default: Any = None
    help: str = ""
    flag: str | None = None
    group: str = ""  # the --help section
    exclusive: str = ""  # options sharing this tag exclude each other
    required: bool = False
    nargs: str | None = None  # positional: "?" or "+"
    repeat: bool = False  # the CLI option may be given several times (a list)
    metavar: str | None = None  # the CLI's placeholder (default: the kind's, or NAME)
    cli_default: Any = None  # the CLI's default where it differs (only `out`: see `out_option`)

    @property
    def positional(self) -> bool:
        return self.flag == ""

    @property
    def spelling(self) -> str:
        if self.positional:
            return self.placeholder
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def placeholder(self) -> str:
        return self.metavar or self.kind.metavar or self.name.upper()

    def label(self, door: str) -> str:
        return self.name if door == API else self.spelling

    def check(self, value, door: str):
        """The value in the form the run function reads (None stays None: "not given")."""
        if value is None:
            return None
        if self.repeat and isinstance(value, list):  # given several times: one comma-separated value
            return ",".join(str(self.kind.check(v, self.label(door))) for v in value)
        return self.kind.check(value, self.label(door))


@dataclass
class Answer:
    """What a run gives back: `value` is what the Python API returns (typed results), `data` what ``--json``
    prints, `interrupted` whether Ctrl-C stopped it (and `kept` what the CLI then says was kept)."""

    value: Any = None
    data: Any = None
    interrupted: bool = False
    kept: str = "finished jobs are saved: the same command again goes on from there"


class Request(SimpleNamespace):
    """A verb's checked options as attributes (``req.layer``, ``req.iters``…) and the door it came through."""

    def __init__(self, verb: Verb, door: str, values: dict):
        super().__init__(**values)
        self._verb, self._door = verb, door

    def replace(self, **values) -> Request:
        """The same request with other values (not checked again: the caller gives checked ones)."""
        return Request(self._verb, self._door, {**self.values(), **values})

    def label(self, name: str) -> str:
        """An option as this door spells it, for messages: ``--chunk`` or ``chunk``."""
        return self._verb.option(name).label(self._door)

    def values(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Verb:
    """A verb: its CLI word, its Python name, its options and the run function (``"module:function"``,
    imported when it runs)."""

    name: str
    summary: str
    options: tuple[Option, ...]
    run: str
    example: str
    api: str | None = None  # the Python function's name ("" for CLI-only verbs; default: the word)
    positional: tuple[str, ...] = ()  # the Python function's positional parameters, in order
    json: bool = False  # prints a table: takes --json
    doc: str = ""  # a paragraph for both doors' help
    returns: str = ""  # the numpy docstring's Returns section
    formerly: tuple[str, ...] = ()  # old CLI spellings, still accepted with a notice
    exclusive_required: tuple[str, ...] = ()  # tags of exclusive groups one of which must be given

    @property
    def api_name(self) -> str:
        return self.name.replace("-", "_") if self.api is None else self.api

    def option(self, name: str) -> Option:
        return {o.name: o for o in self.options}[name]

    def runner(self) -> Callable[[Request], Answer]:
        module, _, function = self.run.partition(":")
        return getattr(importlib.import_module(module), function)

    def request(self, values: dict, door: str = API) -> Request:
        """Every option checked once (unknown keywords, types, ranges, exclusive options) -> a `Request`;
        options not given take their declared default."""
        offered = {o.name for o in self.options}
        for name in values:
            if name not in offered:
                raise unknown(f"parameter of {self.api_name or self.name}()", name, offered)
        given = frozenset(n for n, v in values.items() if v is not None and v is not False)
        out = {}
        for o in self.options:
            value = values.get(o.name, o.default)
            if o.required and value is None:
                raise CnnscopeError(f"{o.label(door)} is required")
            out[o.name] = o.check(value, door)
        tags: dict[str, list[str]] = {}
        for o in self.options:
            if o.exclusive and o.name in given:
                tags.setdefault(o.exclusive, []).append(o.label(door))
        for names in tags.values():
            if len(names) > 1:
                raise CnnscopeError(f"{' and '.join(names)} exclude each other: give one")
        for tag in self.exclusive_required:
            if tag not in tags:
                choices = [o.label(door) for o in self.options if o.exclusive == tag]
                raise CnnscopeError(f"give one of {', '.join(choices)}")
        return Request(self, door, out)


# ----------------------------------------------------------------------------------------------- registry
FAMILIES = ("cnnscope.models.verbs", "cnnscope.preimage.verbs", "cnnscope.backprop.verbs",
            "cnnscope.transforms.verbs", "cnnscope.features.verbs", "cnnscope.report.verbs")


def registry() -> dict[str, Verb]:
    """Every verb by its CLI word, in the families' order (each family's ``VERBS``)."""
    verbs: dict[str, Verb] = {}
    for family in FAMILIES:
        for verb in importlib.import_module(family).VERBS:
            verbs[verb.name] = verb
    return verbs


def by_api_name() -> dict[str, Verb]:
    """The verbs the Python API offers, by function name."""
    return {v.api_name: v for v in registry().values() if v.api_name}


# ------------------------------------------------------------------------------------- shared options
DEFAULT_MODEL = "efficientnet_lite0"
MODEL_HELP = "zoo name, path/file.py:factory, or TorchScript file"


def grouped(title: str, *options: Option) -> tuple[Option, ...]:
    """The options under one --help section."""
    return tuple(replace(o, group=title) for o in options)


def model_options(role: str = "", default: str | None = None, positional: bool = False, several: bool = False,
                  preprocessing: bool = True, device: bool = True) -> tuple[Option, ...]:
    """The model (--model, a positional MODEL, or --a/--b for a second role) and how to load it."""
    suffix = f"_{role}" if role else ""
    help_ = f"{MODEL_HELP} (default {default or DEFAULT_MODEL})" + (
        "; several comma-separated: the same layer across models" if several else "")
    opts = [Option(f"weights{suffix}", Text(metavar="PATH"), None, "checkpoint (.pth/.pt/.safetensors) to load "
                   "strictly"),
            Option(f"random_weights{suffix}", Flag(), False, "keep the seeded random initialisation")]
    if device:
        opts += [Option("device", Text(metavar="DEVICE"), "auto", "auto (CUDA if available, else CPU), cpu, cuda, "
                        "cuda:N or mps"),
                 Option("amp", Flag(), False, "mixed precision for forward/backward passes (float16 on CUDA, "
                        "bfloat16 on CPU)")]
    if preprocessing:
        opts += [Option("profile", Text(metavar="FILE.toml"), None, "a model card: model, weights, input_size, "
                        "resize, mean, std, classes (options given explicitly win)"),
                 Option("input_size", Int(), None, "network input size in px (user models)"),
                 Option("resize", Int(), None, "shorter side before the centre crop"),
                 Option("mean", Floats3(), None, "normalisation mean R,G,B in [0,1] units"),
                 Option("std", Floats3(), None, "normalisation std R,G,B in [0,1] units"),
                 Option("class_names", Text(metavar="FILE"), None, "class names, one per line (default: ImageNet)",
                        flag="--classes")]
    return (Option(role or "model", ModelRef(), default, help_, flag="" if positional else None,
                   nargs="?" if positional else None),
            *grouped(f"model {role.upper()} options" if role else "model options", *opts))


def memory_option() -> Option:
    return Option("max_memory", Float(low=0.0, strict=True), None, "refuse work estimated to need more memory, "
                  "in GB (default: half this machine's, at most 8)", group="run", metavar="GB")


def run_options(jobs: bool = True, seed: bool = True) -> tuple[Option, ...]:
    """--seed, --deterministic, --max-memory, and for verbs made of several jobs --workers and --ray."""
    opts = [Option("seed", Int(low=0), 0, "random seed: fixes everything"),
            Option("deterministic", Flag(), False, "torch's deterministic algorithms (same bits on CUDA for the "
                   "same seed; slower)")] if seed else []
    opts.append(memory_option())
    if jobs:
        opts += [Option("workers", Workers(), 1, "worker processes; outputs are byte-identical however many (the "
                        "API computes in memory without `out`)"),
                 Option("ray", RayAddress(), None, "run the jobs on a Ray cluster ('local' starts one here)")]
    return grouped("run", *opts)


OUT_HELP = "output folder (in Python, None: computed in memory, nothing written; `result.save(folder)` writes " \
           "the same files)"


def out_option(default: str = "cnnscope-out") -> Option:
    """--out: a folder. The one default that differs between the doors: the CLI writes there by default, the
    API computes in memory unless given a folder."""
    return Option("out", Text(metavar="DIR"), None, OUT_HELP, group="output",
                  cli_default=default)


IMAGE_HELP = "image file or sample:NAME"
RECIPE_NAMES = ("mv", "lucid", "maco")  # checked against `preimage.recipes` by the tests
PARAM_NAMES = ("pixel", "colour", "fourier", "maco")


def optimiser_options(data_weight: float, recipes: bool = True) -> tuple[Option, ...]:
    """The solver's options, shared by every pre-image verb (texture and style take no recipe)."""
    opts = [Option("recipe", Text(RECIPE_NAMES), None, "mv (Mahendran & Vedaldi: pixels + TV/alpha prior), lucid "
                   "(Fourier + decorrelated colour + transforms), maco (phase only); default: the verb's measured "
                   "best"),
            Option("param", Text(PARAM_NAMES), None, "image parametrisation (default: the recipe's)"),
            Option("transforms", Text(metavar="SPEC"), None, "robustness transforms each step: 'standard', 'none' "
                   "or e.g. 'pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4' (default: the recipe's)")
            ] if recipes else []
    return grouped("optimiser", *opts,
        Option("size", Int(low=8), None, "image size in px (default: the model's input size)"),
        Option("iters", Int(), None, "iterations (default: the recipe's for the verb: lucid 256, 192 for maximize; "
               "mv 300)"),
        Option("optimizer", Text(("sgd", "adam", "lbfgs")), None, "sgd = momentum 0.9 (M&V IJCV'16), adam (lucid, "
               "maco, texture, style), lbfgs"),
        Option("lr", Float(low=0.0, strict=True), None, "typical step (pixels: a fraction of B=80; default: the "
               "recipe's, 0.05)"),
        Option("jitter", Int(low=0), None, "random circular shift in px each step, 0 = none (default: mv recipe 1/8 "
               "of the layer stride for deep layers)"),
        Option("data_weight", Float(low=0.0), data_weight, "weight C of the data term"),
        Option("tv_beta", Float(low=0.0, strict=True), None, "TV exponent beta (default 2)"),
        Option("tv_weight", Float(low=0.0), None, "multiplier on lambda_beta (default 1)"),
        Option("alpha_weight", Float(low=0.0), None, "multiplier on lambda_alpha (default 1)"),
        Option("no_prior", Flag(), False, "no TV and no alpha-norm term"),
        Option("no_box", Flag(), False, "do not keep pixels in [0,1] (only the B+ bound)"))


DATA_WEIGHT = 20.0  # C, the data term's weight of every pre-image verb (M&V IJCV'16 use C in this range)


def force_option(what: str = "--out") -> Option:
    return Option("force", Flag(), False, f"replace {what} if it exists", group="output")
