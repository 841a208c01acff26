"""The `cnnscope` command, made from the verb declarations (`cnnscope.verbs`): one subcommand per verb, its
options, help and example from the declaration. Shared here: --quiet/--verbose on every verb and --json on
every verb that prints a table. Help imports no torch; a verb's science is imported when it runs (through
`cnnscope.api.run_verb`, the one runtime both doors share)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import multiprocessing
import os
import signal
import sys

from .. import __version__
from ..errors import CnnscopeError
from ..verbs import CLI, Flag, Option, Text, Verb, registry


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        sys.stderr.write(f"cnnscope: error: {message} (see: {self.prog} --help)\n")
        sys.exit(2)


def _type(option: Option):
    """An argparse type: the option's kind reads the text (refused as "expected …") and checks the value."""
    kind = option.kind

    def adapt(text: str):
        try:
            value = kind.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.what}, got '{text}'") from None
        try:
            return kind.check(value, "")
        except CnnscopeError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    adapt.__name__ = type(kind).__name__
    return adapt


def default_of(option: Option):
    return option.cli_default if option.cli_default is not None else option.default


def help_of(option: Option) -> str:
    """The option's help and its default, as the API's docstring says them."""
    default = default_of(option)
    return option.help + ("" if default is None or isinstance(option.kind, Flag) else f" (default {default})")


def _add(sub, verb: Verb, word: str, listed: bool) -> None:
    kwargs = {"help": verb.summary} if listed else {}
    p = sub.add_parser(word, description=verb.summary + (f"\n\n{verb.doc}" if verb.doc else ""),
                       epilog=f"example:\n  {verb.example}", formatter_class=argparse.RawDescriptionHelpFormatter,
                       **kwargs)
    p.set_defaults(verb=verb.name)
    groups: dict[str, argparse._ActionsContainer] = {}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for o in verb.options:
        if o.exclusive:
            if o.exclusive not in exclusive:
                exclusive[o.exclusive] = p.add_mutually_exclusive_group(required=o.exclusive in verb.exclusive_required)
            where = exclusive[o.exclusive]
        elif o.group:
            if o.group not in groups:
                groups[o.group] = p.add_argument_group(o.group)
            where = groups[o.group]
        else:
            where = p
        if o.positional:
            where.add_argument(o.name, nargs=o.nargs, metavar=o.placeholder, help=help_of(o), default=default_of(o),
                               type=_type(o))
            continue
        spec = {"dest": o.name, "help": help_of(o), "default": default_of(o)}
        if isinstance(o.kind, Flag):
            spec["action"] = "store_true"
        else:
            spec.update(metavar=o.placeholder, action="append" if o.repeat else "store", required=o.required,
                        nargs=o.nargs)
            if isinstance(o.kind, Text) and o.kind.choices:
                spec.update(choices=o.kind.choices, metavar=None)
            else:
                spec["type"] = _type(o)
        where.add_argument(o.spelling, **spec)
    g = p.add_argument_group("output")
    talk = g.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="print nothing but errors" + (" (with --json: the JSON)" if verb.json else ""))
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="also report inner loops (solver steps, epochs) when not on a terminal")
    if verb.json:
        g.add_argument("--json", action="store_true", help="print the table as JSON on stdout instead")


def build_parser() -> Parser:
    parser = Parser(prog="cnnscope", description="Understand what a CNN represents.")
    parser.add_argument("--version", action="version", version=f"cnnscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for verb in registry().values():
        _add(sub, verb, verb.name, listed=True)
    for verb in registry().values():
        for old in verb.formerly:  # still accepted, not listed
            _add(sub, verb, old, listed=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    verb = registry()[args.verb]
    if args.command != verb.name and not args.quiet:
        sys.stderr.write(f"cnnscope: note: '{args.command}' is now '{verb.name}'\n")
    as_json = getattr(args, "json", False)
    values = {o.name: getattr(args, o.name) for o in verb.options}
    # the science and torch are imported only now, for a verb that runs (help stays quick)
    doors = importlib.import_module("cnnscope.api")
    try:
        with open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull) if (args.quiet or as_json) else contextlib.nullcontext():
            answer = doors.run_verb(verb, values, CLI, quiet=args.quiet, verbose=args.verbose, tables=not as_json)
        if answer.interrupted:
            sys.stderr.write(f"cnnscope: interrupted; {answer.kept}\n")
            return 130
        if as_json:
            print(json.dumps(doors.json_safe(answer.data), indent=2))
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


__all__ = ["build_parser", "main", "run"]
