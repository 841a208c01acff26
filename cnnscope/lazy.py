"""Package attributes imported on first use (PEP 562), so that ``cnnscope --help`` and the verb declarations
import no torch: a package lists what each of its modules exports, and `exports` gives its ``__getattr__``."""

from __future__ import annotations

import importlib
import sys


def exports(package: str, table: dict[str, str]):
    """A ``__getattr__`` for `package` that imports ``table[module]`` names from their module when first read.

    `table` maps a relative module name (``".model"``) to the names it exports, space-separated."""
    where = {name: module for module, names in table.items() for name in names.split()}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__, sorted(where)
