"""A pre-image run's figure and summary: the verbs' jobs (one model x layer x variant each, see `jobs`, planned
in `plans`) run and composed into the seed's figures (grids) and a summary JSON beside them.

Every job writes its PNG(s) and then its JSON record atomically as soon as it finishes, so an interrupted
run loses at most the jobs in flight (a solver stopped by Ctrl-C still saves its best picture, marked
interrupted and not done), and the same command run again reuses finished jobs with identical settings.
The figure and summary of a run are made from the records, so they are the same however the jobs ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..images import load_image, load_thumbnail, source_stem
from ..jobs import Run, execute
from ..layers import expand_layers
from ..models import Model
from ..store import slug, write_json
from ..targets import Target
from ..viz import image_grid
from .plans import PRIOR_VARIANTS, Planned, plan_accentuate, plan_caricature, plan_invert
from .recipes import Recipe
from .solver import SolverConfig
from .tasks import Prior, sized_preprocess


def _recorded(image) -> str:
    """How a summary names its picture: the path or sample, or "(in memory)" for a picture given as data."""
    return image if isinstance(image, str) else "(in memory)"


def _pictures(out: Path | None, run: Run) -> list[list[np.ndarray]]:
    """Every finished job's pictures as grid thumbnails, read back from its PNGs (so reused and computed jobs look
    the same, and a run of thousands of pictures holds thumbnails, not the pictures); none in memory."""
    if out is None:
        return [[] for _ in run.outcomes]
    return [[load_thumbnail(out / f) for f in o.files] for o in run.outcomes]


def run_invert(models: Sequence[Model], image: str, layer_spec: str, out: Path, *, cfg: SolverConfig | None,
               prior: Prior | None, data_weight: float, size: int | None, restarts: int = 1,
               compare_priors: bool = False, window=None, recipe: Recipe | str | None = None, joint: bool = False,
               workers: int = 1, ray: str | None = None) -> tuple[dict, Run]:
    """Invert `image` at every layer of `layer_spec` in every model (or at all of them jointly); a grid and a
    summary JSON beside the jobs (`out` None: in memory, no files). Returns the summary and the run."""
    img = load_image(image)
    planned = plan_invert(models, image, lambda m: expand_layers(m, layer_spec), size=size, recipe=recipe, cfg=cfg,
                          prior=prior, data_weight=data_weight, restarts=restarts, window=window,
                          compare_priors=compare_priors, joint=joint)
    jobs, titles = [p.job for p in planned], [p.title for p in planned]
    variants = PRIOR_VARIANTS if compare_priors else {"": None}
    columns = 1 if joint else max(len(expand_layers(m, layer_spec)) for m in models)
    run = execute(jobs, out, workers=workers, ray=ray, desc="invert")
    title_of = dict(zip((j.key for j in jobs), titles))
    units = []
    for o in run.outcomes:
        units.append({"file": o.job.key, "title": title_of[o.job.key].replace("\n", " "),
                      "normalised_error": o.results["normalised_error"],
                      "judge_top5_overlap": o.results.get("judge_top5_overlap"), "seconds": o.seconds,
                      **({"ambiguity": o.results["ambiguity"]} if o.results.get("ambiguity") else {}), **_notes(o)})
    grid = slug(f"invert_{source_stem(image)}_grid.png")
    summary = {"image": _recorded(image), "units": units, "grid": grid, "interrupted": run.interrupted}
    if out is None:
        return summary, run
    original = sized_preprocess(models[0], size or models[0].input_size).geometry(img)[0]
    imgs, captions_ = [original], ["original"]
    for o, pictures in zip(run.outcomes, _pictures(out, run)):
        for i, im in enumerate(pictures):
            imgs.append(im)
            captions_.append(f"{title_of[o.job.key]}\nerr {o.results['normalised_error'][i]:.3f}"
                             + (f" #{i + 1}" if len(pictures) > 1 else ""))
    image_grid(imgs, captions_, out / grid, ncols=min(len(imgs), 1 + columns * len(variants) * restarts, 5))
    _write_summary(summary, out / slug(f"invert_{source_stem(image)}_summary.json"))
    return summary, run


def _notes(outcome) -> dict:
    """A unit's notes (an all-zero code, a dead unit), only when there are some."""
    return {"notes": outcome.results["notes"]} if outcome.results.get("notes") else {}


def _write_summary(summary: dict, path: Path) -> None:
    """The run's summary without timings (they are printed): the same bytes however the jobs ran."""
    write_json({**summary, "units": [{k: v for k, v in u.items() if k != "seconds"} for u in summary["units"]]},
               path)


# --------------------------------------------------------------------------------------------- maximize
def run_maximize(planned: Sequence[Planned], out: Path | None, *, workers: int = 1,
                 ray: str | None = None) -> tuple[dict, Run]:
    """The maximize jobs `plan_maximize` made (one per chunk of targets solved together, `batch` pictures per
    target), run; a grid and a summary."""
    jobs, titles = [p.job for p in planned], {p.job.key: p.title for p in planned}
    run = execute(jobs, out, workers=workers, ray=ray, desc="maximize")
    imgs, captions, records = [], [], []
    for o, pictures in zip(run.outcomes, _pictures(out, run)):
        res, per = o.results, o.job.batch
        for i in range(len(o.job.targets) * per):
            label = o.job.targets[i // per].label()
            if pictures:
                imgs.append(pictures[i])
                captions.append(f"{titles[o.job.key]} {label}" + (f" #{i % per + 1}" if per > 1 else ""))
            record = {"file": o.job.key, "layer": o.job.layer, "target": label,
                      "start_activation": res["start_activation"][i], "final_activation": res["final_activation"][i],
                      "reference_scale": res["reference_scale"][i], "activation_ratio": res["activation_ratio"][i],
                      "spectrum_slope": res["naturalness"][i]["spectrum_slope"]}
            if res.get("judge_rank"):
                record["judge_rank"] = res["judge_rank"][i]
            notes = [n for n in res.get("notes", []) if n.startswith(f"{label}:")]
            records.append(record | ({"notes": notes} if notes else {}))
    summary = {"units": records, "grid": "maximize_grid.png", "interrupted": run.interrupted}
    if out is None:
        return summary, run
    if imgs:
        image_grid(imgs, captions, out / summary["grid"], ncols=min(len(imgs), max(4, math.ceil(math.sqrt(len(imgs))))))
    _write_summary(summary, out / "maximize_summary.json")
    return summary, run


# ------------------------------------------------------------------------------------------- caricature
def run_caricature(models: Sequence[Model], image: str, layer_spec: str, out: Path, *, cfg: SolverConfig | None,
                   prior: Prior | None, data_weight: float, size: int | None, cosine_power: float = 0.0,
                   recipe: Recipe | str | None = None, workers: int = 1, ray: str | None = None) -> tuple[dict, Run]:
    """A caricature of `image` per layer and model; a grid (input first) and a summary."""
    img = load_image(image)
    planned = plan_caricature(models, image, lambda m: expand_layers(m, layer_spec), size=size, recipe=recipe,
                              cfg=cfg, prior=prior, data_weight=data_weight, cosine_power=cosine_power)
    jobs, titles = [p.job for p in planned], {p.job.key: p.title for p in planned}
    run = execute(jobs, out, workers=workers, ray=ray, desc="caricature")
    grid = slug(f"caricature_{source_stem(image)}_grid.png")
    summary = {"image": _recorded(image), "units": [{"file": o.job.key, "layer": o.job.layer,
                                          "relative_response": o.results["relative_response"],
                                          "terms": o.results["terms"], "seconds": o.seconds, **_notes(o)}
                                         for o in run.outcomes], "grid": grid, "interrupted": run.interrupted}
    if out is None:
        return summary, run
    original = sized_preprocess(models[0], size or models[0].input_size).geometry(img)[0]
    image_grid([original] + [p[0] for p in _pictures(out, run)], ["input"] + [titles[o.job.key] for o in run.outcomes],
               out / grid, ncols=min(len(run.outcomes) + 1, 10))
    _write_summary(summary, out / slug(f"caricature_{source_stem(image)}_summary.json"))
    return summary, run


# ------------------------------------------------------------------------------------------- accentuate
def run_accentuate(model: Model, image: str, layer: str, targets: Sequence[Target], out: Path, *,
                   cfg: SolverConfig | None, prior: Prior | None, data_weight: float, size: int | None,
                   anchor_layer: str | None, anchor_weight: float,
                   recipe: Recipe | str | None = None) -> tuple[dict, Run]:
    """One job: the image accentuated towards each target (Hamblin et al. 2024), side by side."""
    img = load_image(image)
    s = size or model.input_size
    labels = [t.label() for t in targets]
    job = plan_accentuate(model, image, layer, targets, size=size, recipe=recipe, cfg=cfg, prior=prior,
                          data_weight=data_weight, anchor_layer=anchor_layer, anchor_weight=anchor_weight)[0].job
    key = job.key
    run = execute([job], out, desc="accentuate")
    grid = slug(f"accentuate_{source_stem(image)}_grid.png")
    summary = {"image": _recorded(image), "layer": layer, "units": [], "grid": grid, "interrupted": run.interrupted}
    if run.outcomes:
        res = run.outcomes[0].results
        if out is not None:
            original = sized_preprocess(model, s).geometry(img)[0]
            image_grid([original, *_pictures(out, run)[0]], ["input"] + [f"{layer} {lab}" for lab in labels],
                       out / grid, ncols=min(len(labels) + 1, 6))
        summary["units"] = [{"file": key, "target": lab, "start_activation": res["start_activation"][i],
                             "final_activation": res["final_activation"][i], "anchor_layer": res["anchor_layer"],
                             **({"judge_rank": res["judge_rank"][i]} if res.get("judge_rank") else {})}
                            for i, lab in enumerate(labels)]
    if out is not None:
        _write_summary(summary, out / slug(f"accentuate_{source_stem(image)}_summary.json"))
    return summary, run
