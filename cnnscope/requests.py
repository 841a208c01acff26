"""What the verbs' run functions share to read a `cnnscope.verbs.Request`: its model(s), its output folder or
file (checked before any work), its prior, its engine options and its pictures. Both doors come through here:
a request is the same object whether the CLI or the Python API built it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .device import resolve as resolve_device
from .errors import CnnscopeError
from .images import load_image
from .jobs import Run, model_for, provide
from .models import DEFAULT_MODEL, Model, ModelSpec, load_model
from .models.card import read_profile
from .progress import table
from .verbs import Answer, Request


# ------------------------------------------------------------------------------------------------ models
def load(req: Request, role: str = "") -> Model:
    """The model the request names (`role` "" for `model`, "a"/"b" for the two-model verbs), loaded once per
    process for a name; a `Model` is used as it is, an ``nn.Module`` as a frozen copy. A --profile card fills
    what the request leaves unset."""
    key = f"_{role}" if role else ""
    card = read_profile(req.profile) if not role and getattr(req, "profile", None) else {}

    def option(name: str, attr: str | None = None):
        value = getattr(req, attr or name, None)
        return value if value is not None else card.get(name)

    name = option("model", role or "model") or DEFAULT_MODEL
    device = getattr(req, "device", None) or "auto"
    if isinstance(name, Model):
        if device != "auto" and torch.device(resolve_device(device)) != name.device:
            raise CnnscopeError(f"model {name.name} is on {name.device}, not {device}: load it with "
                                f"load_model(..., device={device!r})")
        provide(name.job_spec(), name)
        return name
    overrides = {k: option(k) for k in ("input_size", "resize", "mean", "std")} if not role else {}
    preprocess = {k: v for k, v in overrides.items() if v is not None}
    kwargs = dict(weights=option("weights", f"weights{key}"),
                  random_weights=getattr(req, f"random_weights{key}", False), seed=getattr(req, "seed", 0),
                  classes=option("classes", "class_names") if not role else None,
                  amp=getattr(req, "amp", False))
    if isinstance(name, str):  # by name: loaded once per process (the engine's cache)
        spec = ModelSpec(name, kwargs["weights"], kwargs["random_weights"], kwargs["seed"],
                         tuple(sorted(preprocess.items())), kwargs["classes"], str(resolve_device(device)),
                         kwargs["amp"])
        return model_for(spec)
    model = load_model(name, preprocess=preprocess or None, device=device, **kwargs)
    provide(model.job_spec(), model)
    return model


def load_several(req: Request) -> list[Model]:
    """Every model of a comma-separated `model` (`weights` applies to a single one)."""
    if not isinstance(req.model, (str, type(None))):
        return [load(req)]
    card_model = read_profile(req.profile).get("model") if getattr(req, "profile", None) else None
    names = [n.strip() for n in (req.model or card_model or DEFAULT_MODEL).split(",") if n.strip()]
    if req.weights and len(names) > 1:
        raise CnnscopeError(f"{req.label('weights')} applies to one model; give one {req.label('model')} with it")
    return [load(req.replace(model=name)) for name in names]


# ------------------------------------------------------------------------------------------------ pictures
def picture(source) -> tuple[object, torch.Tensor]:
    """(what a job records, the picture): a path or sample name stays text, anything else the tensor."""
    tensor = load_image(source)
    return (str(source) if isinstance(source, (str, os.PathLike)) else tensor), tensor


# ------------------------------------------------------------------------------------------------ outputs
def out_dir(req: Request) -> Path | None:
    """The output folder, checked before any work (not a file, under a folder, writable); None: the API
    computes in memory."""
    if req.out is None:
        return None
    out = Path(req.out)
    if out.exists() and not out.is_dir():
        raise CnnscopeError(f"{req.label('out')} {out}: exists and is not a folder")
    check_writable(out, req.label("out"))
    return out


def out_file(path: str, suffix: str, force: bool, what: str = "--out") -> Path:
    """An output file, checked before any work: its suffix, a writable folder, and no silent overwrite."""
    out = Path(path)
    if out.suffix != suffix:
        raise CnnscopeError(f"{what} {out}: must end in {suffix}")
    if out.is_dir():
        raise CnnscopeError(f"{what} {out}: is a folder")
    if out.exists() and not force:
        raise CnnscopeError(f"{what} {out}: exists; give --force to replace it")
    check_writable(out.parent, what, out)
    return out


def check_writable(folder: Path, what: str, named: Path | None = None) -> None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CnnscopeError(f"{what} {named or folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CnnscopeError(f"{what} {named or folder}: cannot write in {probe} (permission denied or read-only)")
    try:  # access() says yes to root everywhere: a real file is the only proof (/proc, a full or odd mount)
        fd, tmp = tempfile.mkstemp(prefix=".cnnscope-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise CnnscopeError(f"{what} {named or folder}: cannot write in {probe} ({err.strerror or err})") from None
    if len((named or folder).name.encode()) > 255:
        raise CnnscopeError(f"{what}: the name {(named or folder).name[:40]}… is too long for a file system")


# ------------------------------------------------------------------------------------------------ running
def engine(req: Request) -> dict:
    """The job engine's options of a request: workers and Ray address."""
    return {"workers": getattr(req, "workers", 1), "ray": getattr(req, "ray", None)}


def wrote(out: Path | None, first: str, *more: str) -> None:
    """The CLI's "wrote OUT/FIRST, MORE…" line (nothing for a run in memory)."""
    if out is not None:
        table("wrote " + ", ".join([str(out / first), *more]))


def notes(record: dict) -> None:
    """A record's notes (an all-zero code, a dead unit, what a method could not see), one line each."""
    for note in record.get("notes", []):
        table(f"note: {note}")


def took(seconds: float | None) -> str:
    return "reused" if seconds is None else f"{seconds:.1f} s"


INTERRUPTED = "finished jobs are saved, the one in flight marked interrupted: the same command again goes on from there"


def first(run: Run) -> dict | None:
    """The record of a one-job run, or None when Ctrl-C stopped it first."""
    return None if run.interrupted or not run.outcomes else run.outcomes[0].results


def answer(run: Run, data, kept: str | None = None) -> Answer:
    """The answer of a run of jobs: its value is its typed results, one or a list in job order, for a run in
    memory (the API without `out`), else `data` (what --json prints); whether Ctrl-C stopped it."""
    typed = [o.result for o in run.outcomes]
    value = (typed[0] if len(typed) == 1 else typed) if typed and None not in typed else data
    return Answer(value, data, run.interrupted, kept or Answer.kept)
