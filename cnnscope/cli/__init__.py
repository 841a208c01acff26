"""The `cnnscope` command: one module per family registers its verbs; every verb is a thin layer over the
Python API (jobs on the engine, see `cnnscope.jobs`). Shared here: --quiet/--verbose on every verb, --json on
every verb that prints a table (its command returns the table's data), an example line in every --help."""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import sys

from .. import __version__, device, memory, progress
from ..errors import CnnscopeError
from ..store import json_safe
from . import backprop, features, models, preimage, report, style, transforms
from .options import Parser

FAMILIES = (models, preimage, style, backprop, transforms, features, report)

# one example per verb (tests parse each of them); shown at the end of `cnnscope VERB --help`
EXAMPLES = {
    "models": "cnnscope models --json",
    "layers": "cnnscope layers efficientnet_lite0 --named",
    "predict": "cnnscope predict sample:chelsea sample:coffee --top-k 3",
    "activations": "cnnscope activations sample:chelsea --layer stage3 --layer stage5",
    "samples": "cnnscope samples",
    "invert": "cnnscope invert sample:chelsea --layer stage4 --out out/invert",
    "maximize": "cnnscope maximize --layer stage6 --channel 0-7 --out out/maximize",
    "accentuate": "cnnscope accentuate sample:coffee --class 'tiger cat' --out out/accentuate",
    "caricature": "cnnscope caricature sample:astronaut --layer stage5 --out out/caricature",
    "texture": "cnnscope texture sample:rocket --iters 300 --out out/texture",
    "style": "cnnscope style sample:astronaut sample:coffee --out out/style",
    "train-texture-net": "cnnscope train-texture-net sample:coffee --iters 500 --out out/coffee-net.safetensors",
    "stylize": "cnnscope stylize --net out/coffee-net.safetensors --size 256 --out out/coffee-texture.png",
    "saliency": "cnnscope saliency sample:chelsea --method all --out out/saliency",
    "backprop": "cnnscope backprop efficientnet_lite0 --method desalinet",
    "selectivity": "cnnscope selectivity --layer stage6 --limit 6 --out out/selectivity",
    "sanity": "cnnscope sanity sample:chelsea --out out/sanity",
    "equivariance": "cnnscope equivariance --transform vflip --layers stage2,stage4 --out out/equivariance",
    "stitch": "cnnscope stitch --a efficientnet_lite0 --b efficientnet_lite1 --layers stage2 --out out/stitch",
    "cka": "cnnscope cka --a efficientnet_lite0 --b efficientnet_lite1 --limit 20 --out out/cka",
    "train-small": "cnnscope train-small --data shapes --seed 1 --out out/shapes1.safetensors",
    "stitch-small": "cnnscope stitch-small --quick --out out/small",
    "hog": "cnnscope hog sample:chelsea --cell-size 8 --out out/hog",
    "report": "cnnscope report efficientnet_lite0 --quick --out out/report",
    "reproduce": "cnnscope reproduce --images ../imagenet-sample --workers 2 --out out/findings",
    "demo": "cnnscope demo --quick --out out/demo",
}
JSON_VERBS = ("models", "layers", "predict", "activations", "invert", "maximize", "accentuate", "caricature",
              "selectivity", "sanity", "equivariance", "stitch", "cka", "reproduce")


def build_parser() -> Parser:
    parser = Parser(prog="cnnscope", description="Understand what a CNN represents.")
    parser.add_argument("--version", action="version", version=f"cnnscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for family in FAMILIES:
        family.register(sub)
    for verb, p in sub.choices.items():
        p.epilog = f"example:\n  {EXAMPLES[verb]}"
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        g = p.add_argument_group("output")
        talk = g.add_mutually_exclusive_group()
        talk.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
        talk.add_argument("-v", "--verbose", action="store_true",
                          help="also report inner loops (solver steps, epochs) when not on a terminal")
        if verb in JSON_VERBS:
            g.add_argument("--json", action="store_true", help="print the table as JSON on stdout instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    as_json = getattr(args, "json", False)
    progress.set_verbosity(progress.QUIET if args.quiet else progress.VERBOSE if args.verbose else progress.NORMAL)
    try:
        memory.set_budget(getattr(args, "max_memory", None))
        if getattr(args, "deterministic", False):
            device.deterministic()
        with open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull) if (args.quiet or as_json) else contextlib.nullcontext():
            data = args.func(args)
        if as_json and not args.quiet:
            print(json.dumps(json_safe(data), indent=2))
    except CnnscopeError as err:
        sys.stderr.write(f"cnnscope: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("cnnscope: interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `cnnscope layers | head`
        return 0
    except OSError as err:  # a full disk, a read-only folder, a vanished path: one line (atomic writes left no part)
        where = f" {err.filename}" if err.filename else ""
        sys.stderr.write(f"cnnscope: error: cannot read or write{where}: {err.strerror or err}\n")
        return 2
    return 0


def _leave_interrupted() -> None:
    """Exit 130 after Ctrl-C. A KeyboardInterrupt that went through code run by an embedded interpreter call
    leaves a flag that makes CPython end the process by SIGINT (-2) even after a clean SystemExit(130), so a
    run without worker processes or Ray leaves at once (every file is already written atomically and
    closed); one with them exits normally, which joins and stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
    ray = sys.modules.get("ray")
    if not multiprocessing.active_children() and not (ray is not None and ray.is_initialized()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


def run() -> None:
    """The ``cnnscope`` command and ``python -m cnnscope``: `main`, then the process's exit status — 130 after
    Ctrl-C wherever it landed, the verb's own status otherwise."""
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl-C outside a verb's own handling (while starting up or writing the last line)
        sys.stderr.write("cnnscope: interrupted\n")
        code = 130
    except SystemExit as stop:
        code = stop.code
    if code == 130:
        _leave_interrupted()
    # the work is over and its files are written: a Ctrl-C during the interpreter's own shutdown (~0.2 s of
    # freeing modules) would otherwise end a finished run by SIGINT instead of its exit code
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


__all__ = ["EXAMPLES", "JSON_VERBS", "build_parser", "main", "run"]
