"""The memory budget: every allocation that grows with a user's numbers (picture sizes, glyph sizes, thin
images resized) is estimated before it is made and refused beyond the budget, in one line.

The budget defaults to half the machine's memory (at most 8 GB) and is set once per run (`--max-memory`).
"""

from __future__ import annotations

import math
import os

import torch

from .errors import CnnscopeError

_BUDGET_GB: float | None = None


def machine_memory_gb() -> float:
    """Physical memory of this machine in GB (16 when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        return 16.0


def default_budget_gb() -> float:
    return min(8.0, machine_memory_gb() / 2)


ENV = "CNNSCOPE_MAX_MEMORY_GB"  # how worker processes inherit a budget set in the parent


def budget_gb() -> float:
    """The current budget in GB."""
    if _BUDGET_GB is not None:
        return _BUDGET_GB
    try:
        return float(os.environ[ENV])
    except (KeyError, ValueError):
        return default_budget_gb()


def set_budget(gb: float | None) -> None:
    """Set the budget for this process and the workers it starts (None: the default)."""
    global _BUDGET_GB
    if gb is not None and not (math.isfinite(gb) and gb > 0):
        raise CnnscopeError(f"the memory budget must be a positive number of GB, got {gb}")
    _BUDGET_GB = gb
    if gb is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = repr(gb)


def check_bytes(n_bytes: float, what: str, hint: str = "") -> None:
    """Refuse `what` when it would allocate more than the budget."""
    need = n_bytes / 2 ** 30
    if need > budget_gb():
        raise CnnscopeError(f"{what} would need about {need:.1f} GB, over the memory budget of {budget_gb():g} GB"
                            f" ({hint + ', or ' if hint else ''}--max-memory GB)")


def process_rss_bytes() -> int:
    """Memory this process holds now (resident set; Linux /proc, else 0): what a fit's own estimate adds to."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def headroom_bytes() -> float:
    """What the budget leaves for new allocations: the budget less what this process already holds."""
    return budget_gb() * 2 ** 30 - process_rss_bytes()


def device_free_gb(device) -> float:
    """Free memory of an accelerator in GB (90% of it, leaving the allocator room); infinite for the CPU,
    whose budget is `budget_gb`."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.9 * free / 2 ** 30
    return math.inf
