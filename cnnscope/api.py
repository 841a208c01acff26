"""The Python API, made from the verb declarations (`cnnscope.verbs`): one function per verb, with the verb's
options as keywords, their defaults and a numpy docstring, so ``help(cnnscope.invert)`` and ``cnnscope invert
--help`` show the same options, defaults and text.

Every call takes the model as a zoo name (``"efficientnet_lite0"``), a :class:`cnnscope.Model`, or any
``torch.nn.Module`` (analysed as a frozen copy: your network is never changed), and pictures as a path,
``sample:NAME``, a PIL image, a numpy HxWxC array or a tensor [3,H,W]. A call runs the same code as the CLI
(`run_verb`: the same checks, defaults and jobs, seed for seed and byte for byte). Without ``out`` the jobs are
computed in this process and the call returns their typed results: each shows itself in a notebook, gives
``images`` (PIL) and ``to_json()``, and ``save(folder)`` writes what the CLI writes. With ``out`` it runs as
the CLI does (resumable, ``workers``, Ray) and returns the summary the CLI's ``--json`` prints. Bad arguments
raise :class:`cnnscope.CnnscopeError` (a ``ValueError``) naming the parameter.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable

from . import device, memory, progress
from .backprop.jobs import SaliencyResult, SanityResult, SelectivityResult
from .errors import CnnscopeError
from .features import zoo as _handcrafted  # noqa: F401 (registers HOG and DSIFT in the model zoo)
from .features.jobs import HogResult
from .models import Model
from .preimage.jobs import ActivationResult, CaricatureResult, InvertResult, StyleResult
from .report.commands import FindingsResult, ReportResult
from .requests import load
from .store import json_safe  # noqa: F401 (the CLI prints --json with it, importing only this module)
from .transforms.jobs import CkaResult, EquivarianceResult, StitchResult
from .verbs import API, Answer, Flag, Verb, by_api_name


@contextlib.contextmanager
def _settings(req, quiet: bool, verbose: bool, tables: bool):
    """A request's process-wide settings for the length of its run (the memory budget, deterministic
    algorithms, what is printed), put back afterwards."""
    budget, level = memory._BUDGET_GB, progress.verbosity()
    progress.set_verbosity(progress.QUIET if quiet else progress.VERBOSE if verbose else level)
    progress.set_tables(tables and not quiet)
    try:
        if getattr(req, "max_memory", None) is not None:
            memory.set_budget(req.max_memory)
        if getattr(req, "deterministic", False):
            device.deterministic()
        yield
    finally:
        memory.set_budget(budget)
        progress.set_verbosity(level)
        progress.set_tables(False)


def run_verb(verb: Verb, values: dict, door: str = API, *, quiet: bool = False, verbose: bool = False,
             tables: bool = False) -> Answer:
    """The one runtime of both doors: the request checked from `values`, then the verb's run function.

    Parameters
    ----------
    verb : Verb
        The declaration (``cnnscope.verbs.registry()[name]``).
    values : dict
        Option values by name; the missing ones take their declared defaults.
    door : {"api", "cli"}
        Which door's spelling errors name the options in.
    quiet, verbose, tables : bool
        What is printed while it runs (the CLI's --quiet, --verbose; its result table).

    Returns
    -------
    Answer
        ``value`` what the Python function returns, ``data`` what ``--json`` prints, ``interrupted``.
    """
    req = verb.request(values, door)
    run = verb.runner()
    with _settings(req, quiet, verbose, tables):
        return run(req)


def _docstring(verb: Verb) -> str:
    lines = [f"{verb.summary[0].upper()}{verb.summary[1:]}: ``cnnscope {verb.name}``.", ""]
    if verb.doc:
        lines += [verb.doc, ""]
    lines += ["Parameters", "----------"]
    for o in verb.options:
        default = "" if o.default is None or isinstance(o.kind, Flag) else f", default {o.default!r}"
        optional = ", optional" if o.default is None and not o.required else ""
        lines.append(f"{o.name} : {o.kind.type_name}{optional}{default}")
        lines.append(f"    {o.help} (``{o.spelling}``)." if o.help else f"    ``{o.spelling}``.")
    if verb.returns:
        lines += ["", "Returns", "-------", *verb.returns.splitlines()]
    lines += ["", "Raises", "------", "CnnscopeError", "    A parameter of the wrong type or out of range, named."]
    return "\n".join(lines)


def signature(verb: Verb) -> inspect.Signature:
    """The API function's signature: the declared positional parameters, then every other option by keyword."""
    options = {o.name: o for o in verb.options}
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=options[n].default)
              for n in verb.positional]
    params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
               for o in options.values() if o.name not in verb.positional]
    return inspect.Signature(params)


def function(verb: Verb) -> Callable:
    """The verb as a Python function (its value: typed results; see the module's docstring)."""
    sig = signature(verb)

    def call(*args, **kwargs):
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as err:
            raise CnnscopeError(f"{verb.api_name}(): {err}") from None
        return run_verb(verb, dict(bound.arguments)).value

    call.__name__ = call.__qualname__ = verb.api_name
    call.__module__ = __name__
    call.__signature__ = sig
    call.__doc__ = _docstring(verb)
    return call


def as_model(model, device: str | None = None) -> Model:
    """A zoo name, a `Model` or an ``nn.Module`` as a loaded `Model` (loaded once per process for a name).

    Raises
    ------
    CnnscopeError
        An unknown name, or something that is not a model.
    """
    verb = by_api_name()["list_layers"]
    return load(verb.request({"model": model, **({"device": device} if device else {})}, API))


FUNCTIONS = {name: function(verb) for name, verb in by_api_name().items()}
globals().update(FUNCTIONS)
# `cnnscope.report` is a subpackage too: once imported, the package attribute would be the module, not the verb
for _name, _function in FUNCTIONS.items():
    setattr(sys.modules["cnnscope"], _name, _function)

RESULTS = (ActivationResult, CaricatureResult, CkaResult, EquivarianceResult, FindingsResult, HogResult, InvertResult,
           ReportResult, SaliencyResult, SanityResult, SelectivityResult, StitchResult, StyleResult)

__all__ = ["RESULTS", "as_model", "run_verb", *(r.__name__ for r in RESULTS), *sorted(FUNCTIONS)]
