"""What every verb shares: the one-line parser, number types that validate once, and the option groups for
loading models, running jobs and writing outputs."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .. import memory
from ..errors import CnnscopeError
from ..jobs import Run
from ..models import DEFAULT_MODEL, Model, load_model
from ..models.card import read_profile
from ..preimage import Prior
from ..preimage.param import PARAMS
from ..preimage.recipes import GRAM_RECIPES, RECIPES
from .numbers import floats3, non_negative, positive, positive_int, ray_address, workers_count


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        sys.stderr.write(f"cnnscope: error: {message} (see: {self.prog} --help)\n")
        sys.exit(2)


# ------------------------------------------------------------------------------------- option groups
MODEL_HELP = "zoo name, path/file.py:factory, or TorchScript file (default efficientnet_lite0)"


def model_options(p: argparse.ArgumentParser, *, positional: bool = False, role: str = "", default: str | None = None,
                  several: bool = False, preprocessing: bool = True) -> None:
    """--model (or a positional MODEL, or --a/--b for a second role), --weights, --random-weights and the
    preprocessing overrides; `load` reads them back."""
    suffix = f"-{role}" if role else ""
    dest = f"model_{role}" if role else "model"
    help_ = MODEL_HELP.replace("efficientnet_lite0", default or DEFAULT_MODEL)
    if several:
        help_ += "; several comma-separated: the same layer across models"
    if positional:
        p.add_argument(dest, nargs="?", default=default, metavar="MODEL", help=help_)
    else:
        p.add_argument(f"--{role}" if role else "--model", dest=dest, default=default, metavar="MODEL", help=help_)
    g = p.add_argument_group(f"model {role.upper()} options" if role else "model options")
    g.add_argument(f"--weights{suffix}", dest=f"weights{'_' + role if role else ''}", metavar="PATH",
                   help="checkpoint (.pth/.pt/.safetensors) to load strictly")
    g.add_argument(f"--random-weights{suffix}", dest=f"random_weights{'_' + role if role else ''}",
                   action="store_true", help="keep the seeded random initialisation")
    if role in ("", "a"):  # one device for every model of a verb
        device_option(g)
        g.add_argument("--amp", action="store_true",
                       help="mixed precision for forward/backward passes (float16 on CUDA, bfloat16 on CPU)")
    if preprocessing:
        g.add_argument("--profile", metavar="FILE.toml",
                       help="a model card: model, weights, input_size, resize, mean, std, classes (options given "
                            "on the command line win)")
        g.add_argument("--input-size", type=positive_int, help="network input size in px (user models)")
        g.add_argument("--resize", type=positive_int, help="shorter side before the centre crop")
        g.add_argument("--mean", type=floats3, help="normalisation mean R,G,B in [0,1] units")
        g.add_argument("--std", type=floats3, help="normalisation std R,G,B in [0,1] units")
        g.add_argument("--classes", metavar="FILE", help="class names, one per line (default: ImageNet)")


def device_option(p) -> None:
    """--device: where the networks run (see `cnnscope.device`)."""
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps (default auto)")


def run_options(p: argparse.ArgumentParser, *, jobs: bool = True) -> None:
    """--seed, and for verbs made of several jobs --workers and --ray."""
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0, help="random seed: fixes everything (default 0)")
    g.add_argument("--deterministic", action="store_true",
                   help="torch's deterministic algorithms (same bits on CUDA for the same seed; slower)")
    memory_option(g)
    if jobs:
        g.add_argument("--workers", type=workers_count, default=1,
                       help="worker processes (default 1); outputs are byte-identical however many")
        g.add_argument("--ray", type=ray_address, metavar="ADDRESS",
                       help="run the jobs on a Ray cluster ('local' starts one here)")


def memory_option(p) -> None:
    """--max-memory: the budget every estimated allocation is checked against (see `cnnscope.memory`)."""
    p.add_argument("--max-memory", type=positive, default=None, metavar="GB",
                   help=f"refuse work estimated to need more memory (default {memory.default_budget_gb():g} GB: "
                        "half this machine's, at most 8)")


def output_options(p: argparse.ArgumentParser, default: str = "cnnscope-out") -> None:
    p.add_argument("--out", default=default, metavar="DIR", help=f"output folder (default {default})")


def optimiser_options(p, data_weight: float, recipes: bool = True) -> None:
    """The solver's options, shared by every pre-image verb (texture and style take no recipe)."""
    g = p.add_argument_group("optimiser")
    if recipes:
        g.add_argument("--recipe", choices=[n for n in RECIPES if n not in GRAM_RECIPES], default=None,
                       help="mv (Mahendran & Vedaldi: pixels + TV/alpha prior), lucid (Fourier + decorrelated "
                            "colour + transforms), maco (phase only); default: the verb's measured best")
        g.add_argument("--param", choices=list(PARAMS), default=None,
                       help="image parametrisation (default: the recipe's)")
        g.add_argument("--transforms", metavar="SPEC", default=None,
                       help="robustness transforms each step: 'standard', 'none' or e.g. "
                            "'pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4' (default: the recipe's)")
    g.add_argument("--size", type=positive_int, help="image size in px (default: the model's input size)")
    g.add_argument("--iters", type=positive_int, default=None,
                   help="iterations (default: the recipe's for the verb: lucid 256, 192 for maximize; mv 300)")
    g.add_argument("--optimizer", choices=["sgd", "adam", "lbfgs"], default=None,
                   help="sgd = momentum 0.9 (M&V IJCV'16), adam (lucid, maco, texture, style), lbfgs")
    g.add_argument("--lr", type=positive, default=None,
                   help="typical step (pixels: a fraction of B=80; default: the recipe's, 0.05)")
    g.add_argument("--jitter", type=int, default=None,
                   help="random circular shift in px each step, 0 = none (default: mv recipe 1/8 of the layer "
                        "stride for deep layers)")
    g.add_argument("--data-weight", type=non_negative, default=data_weight,
                   help=f"weight C of the data term (default {data_weight:g})")
    g.add_argument("--tv-beta", type=positive, default=None, help="TV exponent beta (default 2)")
    g.add_argument("--tv-weight", type=non_negative, default=None, help="multiplier on lambda_beta (default 1)")
    g.add_argument("--alpha-weight", type=non_negative, default=None, help="multiplier on lambda_alpha (default 1)")
    g.add_argument("--no-prior", action="store_true", help="no TV and no alpha-norm term")
    g.add_argument("--no-box", action="store_true", help="do not keep pixels in [0,1] (only the B+ bound)")


def explicit_prior(args) -> Prior | None:
    """The prior the options ask for (None: the recipe's)."""
    if args.no_prior:
        return Prior.none()
    if args.tv_weight is None and args.alpha_weight is None and args.tv_beta is None:
        return None
    return Prior(beta=2.0 if args.tv_beta is None else args.tv_beta,
                 tv_weight=1.0 if args.tv_weight is None else args.tv_weight,
                 alpha_weight=1.0 if args.alpha_weight is None else args.alpha_weight)


# --------------------------------------------------------------------------------------------- use them
def load(args, role: str = "") -> Model:
    """The model the shared options name (`role` "" for --model, "a"/"b" for --a/--b); a --profile card fills
    what the command line leaves unset."""
    key = f"_{role}" if role else ""
    card = read_profile(args.profile) if not role and getattr(args, "profile", None) else {}

    def option(name: str, attr: str | None = None):
        value = getattr(args, attr or name, None)
        return value if value is not None else card.get(name)

    name = option("model", f"model{key}") or DEFAULT_MODEL
    overrides = {k: option(k) for k in ("input_size", "resize", "mean", "std")} if not role else {}
    return load_model(name, weights=option("weights", f"weights{key}"),
                      random_weights=getattr(args, f"random_weights{key}", False), seed=getattr(args, "seed", 0),
                      preprocess={k: v for k, v in overrides.items() if v is not None} or None,
                      classes=option("classes") if not role else None,
                      device=getattr(args, "device", "cpu"), amp=getattr(args, "amp", False))


def load_several(args) -> list[Model]:
    """Every model of a comma-separated --model (--weights applies to a single one)."""
    card_model = read_profile(args.profile).get("model") if getattr(args, "profile", None) else None
    names = [n.strip() for n in (args.model or card_model or DEFAULT_MODEL).split(",") if n.strip()]
    if args.weights and len(names) > 1:
        raise CnnscopeError("--weights applies to one model; give one --model with it")
    models = []
    for name in names:
        args_one = argparse.Namespace(**{**vars(args), "model": name})
        models.append(load(args_one))
    return models


def out_dir(path: str) -> Path:
    """The output folder, checked before any work: not a file, under a folder (not a file), writable."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CnnscopeError(f"--out {out}: exists and is not a folder")
    _check_writable(out, "--out")
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
    _check_writable(out.parent, what, out)
    return out


def _check_writable(folder: Path, what: str, named: Path | None = None) -> None:
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


def engine(args) -> dict:
    """The job engine's options of a verb: workers and Ray address."""
    return {"workers": getattr(args, "workers", 1), "ray": getattr(args, "ray", None)}


def took(seconds: float | None) -> str:
    return "reused" if seconds is None else f"{seconds:.1f} s"


RESUME = "finished jobs are saved: the same command again goes on from there"
INTERRUPTED = "finished jobs are saved, the one in flight marked interrupted: the same command again goes on from there"


def finish(run: Run | bool, what: str = RESUME) -> None:
    """Exit 130 after Ctrl-C (saying what was kept); nothing otherwise."""
    if run if isinstance(run, bool) else run.interrupted:
        sys.stderr.write(f"cnnscope: interrupted; {what}\n")
        raise SystemExit(130)
