"""The `cnnscope` command: one module per family registers its verbs; every verb is a thin layer over the
Python API (jobs on the engine, see `cnnscope.jobs`)."""

from __future__ import annotations

import sys

from .. import __version__, device, memory
from ..errors import CnnscopeError
from . import backprop, features, models, preimage, report, style, transforms
from .options import Parser

FAMILIES = (models, preimage, style, backprop, transforms, features, report)


def build_parser() -> Parser:
    parser = Parser(prog="cnnscope", description="Understand what a CNN represents.")
    parser.add_argument("--version", action="version", version=f"cnnscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for family in FAMILIES:
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        memory.set_budget(getattr(args, "max_memory", None))
        if getattr(args, "deterministic", False):
            device.deterministic()
        args.func(args)
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


__all__ = ["build_parser", "main"]
