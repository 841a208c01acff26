"""Where the computation runs: `--device auto|cpu|cuda|cuda:N|mps` and `load_model(..., device=)`.

Everything cnnscope allocates follows the model's device (`Model.device`); random numbers are drawn on the
CPU from seeded generators and then moved, so a seed gives the same starting noise on every device; what is
written to disk is moved back to the CPU once, at the end.
"""

from __future__ import annotations

import os

import torch

from .errors import CnnscopeError

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def available() -> list[str]:
    """The devices this machine offers, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve(text: str | torch.device | None) -> torch.device:
    """A device name -> torch.device, refused in one line when this machine does not have it.

    Parameters
    ----------
    text : str, torch.device or None
        "auto" (or None): CUDA if available, else CPU; "cpu"; "cuda" / "cuda:N"; "mps"; "meta" (shapes only).

    Returns
    -------
    torch.device
    """
    if isinstance(text, torch.device):
        text = str(text)
    name = (text or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CnnscopeError(f"--device {text}: not a device (expected {CHOICES})") from None
    if device.type in ("cpu", "meta"):
        return torch.device(device.type)
    here = available()
    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        if f"cuda:{index}" not in here:
            raise CnnscopeError(f"--device {text}: not available here (available: {', '.join(here)})")
        return torch.device("cuda", index)
    if device.type == "mps" and "mps" in here:
        return device
    raise CnnscopeError(f"--device {text}: not available here (available: {', '.join(here)})")


def of(model) -> torch.device:
    """The device of a Model's (or module's) first parameter or buffer (CPU for a module without either)."""
    module = getattr(model, "net", model)
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


DETERMINISTIC = "CNNSCOPE_DETERMINISTIC"  # read by every job, so worker processes follow the flag too


def deterministic(on: bool = True) -> None:
    """torch's deterministic algorithms (`--deterministic`): same seed, same bits on CUDA too, at some speed
    cost. The cuBLAS workspace setting it needs is set here, before CUDA starts."""
    os.environ[DETERMINISTIC] = "1" if on else "0"
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)


def follow_environment() -> None:
    """In a worker process: turn on deterministic algorithms if the run asked for them."""
    if os.environ.get(DETERMINISTIC) == "1":
        deterministic(True)
