"""How long work shows itself: one place decides between a progress bar, plain lines and silence.

On a terminal a tqdm bar redraws in place. Off a terminal (a pipe, a log file, CI) redraws would be carriage-
return noise, so only *units* (jobs, sections) report, one plain line each as they finish, with an ETA; inner
loops (solver steps, training epochs) stay silent. ``--quiet`` silences both; ``--verbose`` also prints the
inner loops' lines when piped.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL


def set_verbosity(level: int) -> None:
    """QUIET (errors only), NORMAL or VERBOSE, for this process."""
    global _level
    _level = level


def verbosity() -> int:
    return _level


_tables = False  # a verb's printed table: the CLI's (set by its door), never the Python API's


def set_tables(on: bool) -> None:
    """Whether `table` prints: the CLI turns it on (off with --quiet or --json); the API leaves it off."""
    global _tables
    _tables = on


def table(text: str) -> None:
    """A line of a verb's result table (and where its files went), printed by the CLI only."""
    if _tables:
        print(text, flush=True)


def say(text: str) -> None:
    """A line for the user on stdout (results, where files went), unless quiet."""
    if _level > QUIET:
        print(text, flush=True)


def _terminal() -> bool:
    return sys.stderr.isatty()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Progress:
    """Counts finished units of `total`; a bar on a terminal, else (when `plain`) a line per unit."""

    def __init__(self, total: int, desc: str, unit: str, done: int, enabled: bool, plain: bool, every: int = 1):
        self.total, self.desc, self.unit, self.done, self.every = total, desc, unit, done, every
        self.start, self.start_done = time.monotonic(), done
        self.bar = None
        self.plain = enabled and plain and not _terminal()
        if enabled and _terminal():
            self.bar = tqdm(total=total, initial=done, desc=desc, unit=unit, smoothing=0.1, leave=False)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.plain and (self.done % self.every == 0 or self.done == self.total):
            elapsed = time.monotonic() - self.start
            made = self.done - self.start_done
            eta = elapsed / made * (self.total - self.done) if made else 0.0
            tail = f", ETA {_clock(eta)}" if self.done < self.total else ""
            sys.stderr.write(f"{self.desc}: {self.done}/{self.total} {self.unit}s done ({_clock(elapsed)}{tail})"
                             f"{': ' + note if note else ''}\n")
            sys.stderr.flush()

    def postfix(self, text: str) -> None:
        """A short status after the bar (terminal only)."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def units(total: int, desc: str, unit: str = "job", done: int = 0, show: bool = True) -> Progress:
    """Progress over the units of a run (jobs, sections): a bar, or a plain line per finished unit. Use it
    in a ``with`` block (or close it)."""
    return Progress(total, desc, unit, done, show and _level > QUIET and total > 1, plain=True)


def steps(total: int, desc: str, unit: str = "it", show: bool = True, done: int = 0) -> Progress:
    """Progress over an inner loop (solver steps, epochs): a bar on a terminal; piped, a line every tenth
    only when verbose. Use it in a ``with`` block (or close it)."""
    return Progress(total, desc, unit, done, show and _level > QUIET, plain=_level >= VERBOSE,
                    every=max(1, total // 10))


def iterate(iterable, desc: str, unit: str = "it", show: bool = True):
    """`iterable` with `steps` progress over it (one with a length is not copied: a lazy view stays lazy)."""
    items = iterable if hasattr(iterable, "__len__") else list(iterable)
    with steps(len(items), desc, unit, show) as p:
        for item in items:
            yield item
            p.update()
