"""`cnnscope report`: a whole model as a browsable static site, computed as independent units of work.

A unit is one (kind, layer, channel or image): an inversion, one channel's activation maximisation, a layer's
top-activating dataset patches, one image's DeConvNet/SaliNet/DeSaliNet strip, an equivariance or stitching
run. Each unit writes its PNG(s) and then, last, its JSON (settings + results) atomically: the JSON is the
"done" marker, so a killed run restarted with the same command skips finished units and loses at most the
ones in flight. Units are pure functions of (report settings, unit): each runs single-threaded with a seed
derived from its key, so one process, N worker processes or a Ray cluster write byte-identical files.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import CnnscopeError
from ..images import save_image
from ..store import finished, write_json

QUICK = {"layers": "stage2,stage4", "channels": 4, "iters": 40, "size": 96, "examples": 2, "patch_images": 8}


@dataclass(frozen=True)
class ReportSettings:
    """Everything a unit's output depends on (and nothing it does not: no paths, no worker count)."""

    model: str
    weights: str | None = None
    layers: tuple[str, ...] = ()
    channels: int | None = None  # first K channels of each layer in the atlas (None = every channel)
    iters: int = 200
    size: int | None = None  # pre-image size (None = the model's input size)
    seed: int = 0
    images: str | None = None  # folder of images; None = the bundled samples
    examples: int = 4  # images inverted and back-propagated per layer
    patch_images: int = 100  # images searched for top-activating patches
    patches: int = 9  # patches shown per channel
    equivariance: str | None = None  # transform to analyse (e.g. vflip), None = skip
    stitch_with: str | None = None  # second model for stitching, None = skip
    recipe: str = "lucid"  # pre-image recipe of the atlas (see preimage.recipes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d


@dataclass(frozen=True)
class Unit:
    kind: str  # invert | atlas | patches | backprop | equivariance | stitch
    key: str  # file stem under the report folder, e.g. "atlas/stage2/c0003"
    layer: str | None = None
    channel: int | None = None
    image: str | None = None
    params: dict = field(default_factory=dict, hash=False, compare=False)

    def settings(self, report: ReportSettings) -> dict:
        return {"unit": {"kind": self.kind, "layer": self.layer, "channel": self.channel, "image": self.image},
                "report": report.to_dict()}

    def seed(self, report: ReportSettings) -> int:
        return (zlib.crc32(self.key.encode()) ^ report.seed) & 0x7FFFFFFF


# ------------------------------------------------------------------------------------------ inputs
BUNDLED = ("chelsea", "coffee", "astronaut", "rocket", "retina", "ihc", "hubble", "camera", "coins", "brick")


def image_sources(report: ReportSettings, limit: int) -> list[str]:
    """Image paths (or sample:NAME) in a stable order."""
    if report.images is None:
        names = [f"sample:{n}" for n in BUNDLED]
        return names[:limit]
    from ..data import list_folder

    return [str(p) for p, _ in list_folder(report.images, limit)]


def image_slug(source: str) -> str:
    from ..preimage.runs import slug

    return slug(source[len("sample:"):] if source.startswith("sample:") else Path(source).stem)


def plan(report: ReportSettings, model) -> list[Unit]:
    """Every unit of the report, in a stable order (cheap: reads layer shapes only)."""
    from ..layers import get_layer

    units: list[Unit] = []
    examples = image_sources(report, report.examples)
    from ..preimage.runs import slug

    for layer in report.layers:
        info = get_layer(model, layer)
        d = slug(layer)  # layer names may hold '#' or '()': not for paths and links
        n_channels = info.shape[0]
        channels = range(n_channels if report.channels is None else min(report.channels, n_channels))
        for src in examples:
            units.append(Unit("invert", f"invert/{d}/{image_slug(src)}", layer, image=src))
        for c in channels:
            units.append(Unit("atlas", f"atlas/{d}/c{c:04d}", layer, channel=c))
        units.append(Unit("patches", f"patches/{d}/patches", layer, params={"channels": list(channels)}))
        for src in examples:
            units.append(Unit("backprop", f"backprop/{d}/{image_slug(src)}", layer, image=src))
    if report.equivariance:
        units.append(Unit("equivariance", f"transforms/equivariance_{report.equivariance.replace(':', '')}"))
    if report.stitch_with:
        units.append(Unit("stitch", f"transforms/stitch_{report.stitch_with}"))
    return units


def is_done(out: Path, unit: Unit, report: ReportSettings) -> bool:
    return finished(out, unit.key, unit.settings(report)) is not None


# ------------------------------------------------------------------------------------- unit work
@cache
def _model(name: str, weights: str | None):
    from ..models import load_model

    return load_model(name, weights=weights)


@cache
def _image(source: str) -> torch.Tensor:
    from ..images import load_image

    return load_image(source)


def _prepared(model, source: str) -> torch.Tensor:
    """[1,3,S,S] in [0,1], as the model sees it (before normalisation)."""
    return model.preprocess.geometry(_image(source))


def run_unit(out: str, report_dict: dict, unit_dict: dict) -> str:
    """Compute one unit and write its files (PNG(s) first, JSON last). Top-level so workers can import it."""
    report = ReportSettings(**{**report_dict, "layers": tuple(report_dict["layers"])})
    unit = Unit(**unit_dict)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # results must not depend on how many units run side by side
    try:
        torch.manual_seed(unit.seed(report))
        model = _model(report.model, report.weights)
        work = {"invert": _invert, "atlas": _atlas, "patches": _patches, "backprop": _backprop,
                "equivariance": _equivariance, "stitch": _stitch}[unit.kind]
        files, results = work(Path(out), report, unit, model)  # file names inside the unit's folder
        files = [str(Path(unit.key).parent / f) for f in files]
        write_json({"settings": unit.settings(report), "results": results, "files": files},
                   Path(out) / f"{unit.key}.json")
    finally:
        torch.set_num_threads(threads)
    return unit.key


def _config(report: ReportSettings, unit: Unit):
    from ..preimage.solver import SolverConfig

    return SolverConfig(iters=report.iters, seed=unit.seed(report), progress=False)


def _invert(out: Path, report: ReportSettings, unit: Unit, model) -> tuple[list[str], dict]:
    from ..preimage.presets import invert, reconstruction_error

    result = invert(model, _image(unit.image), [unit.layer], size=report.size,
                    config=_config(report, unit))
    save_image(result.images[0], out / f"{unit.key}.png")
    return [Path(unit.key).name + ".png"], {"normalised_error": round(reconstruction_error(result)[0], 6)}


def _atlas(out: Path, report: ReportSettings, unit: Unit, model) -> tuple[list[str], dict]:
    from ..preimage.presets import Target, maximize
    from ..preimage.quality import spectrum_slope
    from ..preimage.recipes import get_recipe

    recipe = get_recipe(report.recipe, "atlas")
    config = recipe.config(iters=report.iters, seed=unit.seed(report), progress=False)
    result, info = maximize(model, unit.layer, [Target("neuron", unit.channel)], size=report.size,
                            config=config, recipe=recipe)
    save_image(result.images[0], out / f"{unit.key}.png")
    gain = info["final_activation"][0] / max(abs(info["reference_scale"][0]), 1e-12)
    return [Path(unit.key).name + ".png"], {"activation_over_natural_scale": round(gain, 4), "recipe": recipe.name,
                                            "spectrum_slope": round(spectrum_slope(result.images)[0], 3)}


def _crop(image: torch.Tensor, geometry, y: int, x: int, size: int = 64) -> torch.Tensor:
    """The receptive field of unit (y, x) cut from a [3,S,S] image (grey outside), resized to size²."""
    s = image.shape[-1]
    if geometry is None or geometry.h is None:
        box = (0, s - 1, 0, s - 1)
    else:
        gh, gw = geometry.h, geometry.w
        box = (round(gh.start + y * gh.stride), round(gh.end + y * gh.stride),
               round(gw.start + x * gw.stride), round(gw.end + x * gw.stride))
    y0, y1, x0, x1 = box
    pad = max(0, -y0, -x0, y1 - s + 1, x1 - s + 1)
    padded = F.pad(image[None], (pad, pad, pad, pad), value=0.5)[0]
    patch = padded[:, y0 + pad:y1 + pad + 1, x0 + pad:x1 + pad + 1]
    return F.interpolate(patch[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _tile(patches: Sequence[torch.Tensor], cols: int = 3, gap: int = 2) -> torch.Tensor:
    n, size = len(patches), patches[0].shape[-1]
    rows = -(-n // cols)
    canvas = torch.ones(3, rows * size + (rows - 1) * gap, cols * size + (cols - 1) * gap)
    for i, p in enumerate(patches):
        r, c = divmod(i, cols)
        canvas[:, r * (size + gap):r * (size + gap) + size, c * (size + gap):c * (size + gap) + size] = p
    return canvas


def _patches(out: Path, report: ReportSettings, unit: Unit, model) -> tuple[list[str], dict]:
    """Per channel, the images (one patch each) whose strongest response is highest, cropped to the RF."""
    from ..layers import capture, get_layer

    sources = image_sources(report, report.patch_images)
    images = torch.cat([_prepared(model, s) for s in sources])
    with torch.no_grad():
        feats = torch.cat([capture(model, model.preprocess.normalize(images[i:i + 16]), [unit.layer])[unit.layer]
                           for i in range(0, len(images), 16)])
    geometry = get_layer(model, unit.layer).geometry
    if feats.dim() == 4:
        flat = feats.flatten(2)
        best, where = flat.max(2)  # [N, C]
        w = feats.shape[-1]
    else:
        best, where, w = feats, torch.zeros_like(feats, dtype=torch.long), 1
    files, results = [], {"images": [image_slug(s) for s in sources], "channels": {}}
    k = min(report.patches, len(sources))
    for c in unit.params["channels"]:
        top = best[:, c].topk(k).indices.tolist()
        crops, rows = [], []
        for i in top:
            y, x = divmod(int(where[i, c]), w)
            crops.append(_crop(images[i], geometry, y, x))
            rows.append({"image": image_slug(sources[i]), "y": y, "x": x, "value": round(float(best[i, c]), 5)})
        name = f"c{c:04d}.png"
        save_image(_tile(crops), out / Path(unit.key).parent / name)
        files.append(name)
        results["channels"][str(c)] = rows
    return files, results


def _backprop(out: Path, report: ReportSettings, unit: Unit, model) -> tuple[list[str], dict]:
    """Image | DeConvNet | SaliNet | DeSaliNet for the unit of `layer` that responds most to the image."""
    from ..backprop.methods import BPTarget, backprop_maps, render
    from ..layers import capture

    x01 = _prepared(model, unit.image)
    x = model.preprocess.normalize(x01)
    with torch.no_grad():
        feat = capture(model, x, [unit.layer])[unit.layer][0]
    if feat.dim() == 3:
        c, h, w = feat.shape
        idx = int(feat.flatten().argmax())
        channel, rest = divmod(idx, h * w)
        y, xx = divmod(rest, w)
        target = BPTarget("neuron", unit.layer, channel, y, xx)
    else:
        channel, y, xx = int(feat.argmax()), None, None
        target = BPTarget("neuron", unit.layer, channel)
    strip = [x01[0]]
    for method in ("deconvnet", "salinet", "desalinet"):
        maps = backprop_maps(model, x, [target], method)
        strip.append(render(maps[0], "signed")[0])
    gap = torch.ones(3, x01.shape[-2], 4)
    save_image(torch.cat([t for img in strip for t in (img, gap)][:-1], dim=2), out / f"{unit.key}.png")
    return [Path(unit.key).name + ".png"], {"channel": channel, "y": y, "x": xx,
                                             "methods": ["image", "deconvnet", "salinet", "desalinet"]}


def _small_image_set(report: ReportSettings, model, limit: int):
    from ..transforms.runs import image_set

    images, labels = image_set(model, report.images, limit, report.seed)
    n_fit = max(1, round(len(images) * 0.8))
    return images, labels, n_fit


def _equivariance(out: Path, report: ReportSettings, unit: Unit, model) -> tuple[list[str], dict]:
    from ..transforms.equivariance import equivariance_experiment
    from ..transforms.runs import plot_equivariance
    from ..transforms.transform import Transform

    images, labels, n_fit = _small_image_set(report, model, 40)
    transform = Transform.parse(report.equivariance)
    result = equivariance_experiment(model, list(report.layers), transform, images[:n_fit], images[n_fit:],
                                     labels[:n_fit] if labels is not None else None,
                                     labels[n_fit:] if labels is not None else None, task_epochs=2,
                                     seed=unit.seed(report), ridge=0.1, progress=False)
    plot_equivariance(result, out / f"{unit.key}.png", model.name)
    return [Path(unit.key).name + ".png"], {"metric": result["metric"], "baseline": result["baseline"],
                                             "rows": result["rows"]}


def _stitch(out: Path, report: ReportSettings, unit: Unit, model) -> tuple[list[str], dict]:
    from ..transforms.equivalence import stitch_experiment
    from ..transforms.runs import plot_stitch, stitch_table

    other = _model(report.stitch_with, None)
    images, labels, n_fit = _small_image_set(report, model, 40)
    result = stitch_experiment(model, other, [(layer, layer) for layer in report.layers], images[:n_fit],
                               images[n_fit:], labels[:n_fit] if labels is not None else None,
                               labels[n_fit:] if labels is not None else None, task_epochs=2,
                               seed=unit.seed(report), progress=False)
    metric = "top1_error" if labels is not None else "disagreement_with_b"
    rows = stitch_table(result, metric)
    plot_stitch(result, rows, metric, out / f"{unit.key}.png", {"a": model.name, "b": other.name})
    return [Path(unit.key).name + ".png"], {"metric": metric, "rows": rows}


# -------------------------------------------------------------------------------------- executors
def execute(out: Path, report: ReportSettings, units: Sequence[Unit], workers: int = 1,
            ray_address: str | None = None, progress: bool = True) -> dict:
    """Run the units not yet done; Ctrl-C stops (finished units are kept). Returns counts and timing."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.rglob(".*.part"):  # temp files of units a killed run had in flight
        stale.unlink(missing_ok=True)
    pending = [u for u in units if not is_done(out, u, report)]
    for u in pending:
        (out / u.key).parent.mkdir(parents=True, exist_ok=True)
    bar = _Counter(tqdm(total=len(units), initial=len(units) - len(pending), desc="report", unit="unit",
                        disable=not progress, smoothing=0.1))
    args = [(str(out), report.to_dict(), _unit_dict(u)) for u in pending]
    start, interrupted = time.perf_counter(), False
    try:
        if ray_address is not None:
            _run_ray(args, ray_address, workers, bar)
        elif workers <= 1 or len(args) <= 1:
            for a in args:
                run_unit(*a)
                bar.update(1)
        else:
            _run_processes(args, workers, bar)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    done = bar.count  # every finished unit passes through the bar, however it ran
    return {"units": len(units), "already_done": len(units) - len(pending), "computed": done,
            "seconds": round(seconds, 2), "interrupted": interrupted,
            "units_per_minute": round(60 * done / seconds, 2) if done and seconds > 0 else None}


class _Counter:
    """A progress bar that also counts (a disabled tqdm does not)."""

    def __init__(self, bar):
        self.bar, self.count = bar, 0

    def update(self, n: int = 1) -> None:
        self.count += n
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _unit_dict(u: Unit) -> dict:
    return {"kind": u.kind, "key": u.key, "layer": u.layer, "channel": u.channel, "image": u.image,
            "params": u.params}


def _run_processes(args: list[tuple], workers: int, bar) -> int:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: a forked copy of a process that already ran torch's thread pools can deadlock
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    done = 0
    try:
        todo = iter(args)
        running = set()
        for a in todo:  # keep at most 2 per worker queued: Ctrl-C then loses little
            running.add(pool.submit(run_unit, *a))
            if len(running) >= 2 * workers:
                break
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()  # re-raise a worker's error here
                done += 1
                bar.update(1)
                nxt = next(todo, None)
                if nxt is not None:
                    running.add(pool.submit(run_unit, *nxt))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return done


def _run_ray(args: list[tuple], address: str, workers: int, bar) -> int:
    try:
        import ray
    except ImportError:
        raise CnnscopeError("--ray needs Ray: pip install 'cnnscope[ray]'") from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(run_unit)
    refs = [remote.remote(*a) for a in args]
    done = 0
    try:
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            ray.get(ready)
            done += 1
            bar.update(1)
    except BaseException:
        for r in refs:
            ray.cancel(r, force=True)
        raise
    return done


def env_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))

