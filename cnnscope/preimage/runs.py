"""The pre-image verbs as runs of *units* (one model x layer x variant each) that make the seed's figures.

Every unit writes its PNG(s) and a JSON of settings + results atomically as soon as it finishes, so an
interrupted run loses at most the unit in flight (whose best image so far is still saved, marked
interrupted), and the same command run again reuses finished units with identical settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import CnnscopeError
from ..images import finished_unit, load_image, save_image, write_json
from ..layers import resolve
from ..models import Model
from ..report.plots import image_grid
from .presets import (
    Prior,
    Target,
    accentuate,
    ambiguity,
    auto_jitter,
    caricature,
    invert,
    maximize,
    reconstruction_error,
    resolve_settings,
    sized_preprocess,
)
from .quality import activation_ratio, class_ranks, judges_for, naturalness, topk_overlap
from .recipes import Recipe
from .solver import SolverConfig


@dataclass
class Unit:
    key: str  # file stem
    title: str  # caption in the grid
    settings: dict
    run: Callable[[], tuple[torch.Tensor, dict]]  # -> (images [N,3,H,W] in [0,1], results)
    images: torch.Tensor | None = None
    results: dict = field(default_factory=dict)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _png_names(key: str, n: int) -> list[str]:
    return [f"{key}.png"] if n == 1 else [f"{key}_{i}.png" for i in range(n)]


def _reuse(out: Path, unit: Unit) -> bool:
    data = finished_unit(out, unit.key, unit.settings)
    if data is None or not data.get("files") or data.get("results", {}).get("interrupted"):
        return False
    unit.images = torch.stack([load_image(out / name) for name in data["files"]])
    unit.results = data["results"]
    return True


def execute(units: Sequence[Unit], out: Path, desc: str) -> tuple[list[Unit], bool]:
    """Run (or reuse) units in order; stop after one that was interrupted. Returns (done units, interrupted)."""
    out.mkdir(parents=True, exist_ok=True)
    done: list[Unit] = []
    interrupted = False
    for unit in tqdm(units, desc=desc, unit="unit", disable=True if len(units) < 2 else None):
        if not _reuse(out, unit):
            try:
                unit.images, unit.results = unit.run()
            except KeyboardInterrupt:
                interrupted = True
                break
            files = _png_names(unit.key, len(unit.images))
            for img, name in zip(unit.images, files):
                save_image(img, out / name)
            write_json({"settings": unit.settings, "results": unit.results, "files": files},
                       out / f"{unit.key}.json")
        done.append(unit)
        if unit.results.get("interrupted"):
            interrupted = True
            break
    return done, interrupted


def expand_layers(model: Model, spec: str) -> list[str]:
    """Comma-separated layer names; 'stages' (or 'depth') expands to the model's stem-to-logits row."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in ("stages", "depth"):
            net = model.net
            if hasattr(net, "depth_layers"):
                names += net.depth_layers()
            else:
                names += [n for n, _ in net.named_children()]
        else:
            names.append(part)
    if not names:
        raise CnnscopeError("no layer given (--layer NAME[,NAME…] or --layer stages)")
    for n in names:
        resolve(model, n)  # fail early with suggestions, before any optimisation
    return names


def parse_channels(spec: str) -> list[int]:
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise CnnscopeError(f"bad channel list '{spec}' (use e.g. 3 or 0-15 or 1,5,9)")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise CnnscopeError(f"bad channel range '{part}': end before start")
        out += range(a, b + 1)
    return out


def parse_class(model: Model, spec: str) -> int:
    if spec.isdigit():
        k = int(spec)
        if not 0 <= k < len(model.classes):
            raise CnnscopeError(f"class index {k} is out of range (0-{len(model.classes) - 1})")
        return k
    lowered = [c.lower() for c in model.classes]
    if spec.lower() in lowered:
        return lowered.index(spec.lower())
    import difflib

    close = difflib.get_close_matches(spec.lower(), lowered, n=3, cutoff=0.6)
    hint = f"; closest: {', '.join(model.classes[lowered.index(c)] for c in close)}" if close else ""
    raise CnnscopeError(f"unknown class '{spec}'{hint}")


def _base_settings(model: Model, task: str, recipe: Recipe, cfg: SolverConfig, prior: Prior, data_weight: float,
                   size: int) -> dict:
    return {"task": task, **model.settings(), "size": size, "data_weight": data_weight, "recipe": recipe.to_dict(),
            "prior": prior.to_dict(), "solver": cfg.to_dict()}


def _class_scores(model: Model, images: torch.Tensor, targets: Sequence[Target], batch: int) -> dict:
    """Judge ranks of the target class for class visualisations (empty when no target is a class)."""
    classes = [t.channel for t in targets for _ in range(batch)]
    judges = judges_for(model)
    if not judges or any(t.kind != "class" for t in targets):
        return {}
    return {"judge_rank": class_ranks(judges, images, classes)}


# ----------------------------------------------------------------------------------------------- invert
def run_invert(models: Sequence[Model], image: str, layer_spec: str, out: Path, *, cfg: SolverConfig | None,
               prior: Prior | None, data_weight: float, size: int | None, restarts: int = 1,
               compare_priors: bool = False, window=None, recipe: Recipe | str | None = None) -> dict:
    img = load_image(image)
    variants = [("", prior)]
    if compare_priors:
        variants = [("noprior", Prior.none()), ("tv1", Prior(beta=1.0)), ("tv2", Prior(beta=2.0))]
    units: list[Unit] = []
    rows: list[tuple[str, list[str]]] = []
    for model in models:
        layers = expand_layers(model, layer_spec)
        s = size or model.input_size
        for layer in layers:
            for vname, vprior in variants:
                stem = f"invert_{model.name}_{image.replace('sample:', '')}_{layer}"
                key = slug(stem + (f"_{vname}" if vname else ""))
                rec, ucfg, uprior = resolve_settings("invert", recipe, cfg, vprior, auto_jitter(model, [layer], s))
                settings = {**_base_settings(model, "invert", rec, ucfg, uprior, data_weight, s), "image": image,
                            "layer": layer, "restarts": restarts, "window": window}

                def run(model=model, layer=layer, rec=rec, ucfg=ucfg, uprior=uprior, s=s):
                    r = invert(model, img, [layer], size=s, prior=uprior, data_weight=data_weight,
                               restarts=restarts, window=window, config=ucfg, recipe=rec)
                    results = {**r.summary(), "normalised_error": reconstruction_error(r, data_weight),
                               "naturalness": naturalness(r.images)}
                    original = sized_preprocess(model, s).geometry(img)
                    judges = judges_for(model)
                    if judges:
                        results["judge_top5_overlap"] = topk_overlap(judges, r.images, original)
                    if restarts > 1:
                        results["ambiguity"] = ambiguity(r, original)
                    return r.images, results

                title = f"{model.name}\n{layer}" if len(models) > 1 else layer
                if vname:
                    title += f" ({ {'noprior': 'no prior', 'tv1': 'TV β=1', 'tv2': 'TV β=2'}[vname] })"
                units.append(Unit(key, title, settings, run))
        rows.append((model.name, layers))
    done, interrupted = execute(units, out, "invert")
    summary = {"image": image, "units": [{"file": u.key, "title": u.title.replace("\n", " "),
                                          "normalised_error": u.results.get("normalised_error"),
                                          "judge_top5_overlap": u.results.get("judge_top5_overlap"),
                                          "seconds": u.results.get("seconds"),
                                          **({"ambiguity": u.results["ambiguity"]} if "ambiguity" in u.results else {})}
                                         for u in done], "interrupted": interrupted}
    # Figure: original first, then every pre-image (restarts side by side).
    original = sized_preprocess(models[0], size or models[0].input_size).geometry(img)[0]
    imgs, titles = [original], ["original"]
    for u in done:
        for i, im in enumerate(u.images):
            err = u.results["normalised_error"][i]
            imgs.append(im)
            titles.append(f"{u.title}\nerr {err:.3f}" + (f" #{i + 1}" if len(u.images) > 1 else ""))
    ncols = min(len(imgs), 1 + max(len(ls) for _, ls in rows) * len(variants) * restarts, 5)
    grid = out / slug(f"invert_{image.replace('sample:', '')}_grid.png")
    image_grid(imgs, titles, grid, ncols=ncols)
    summary["grid"] = grid.name
    write_json(summary, out / slug(f"invert_{image.replace('sample:', '')}_summary.json"))
    return summary


# --------------------------------------------------------------------------------------------- maximize
def run_maximize(models: Sequence[Model], layer_spec: str, targets_for: Callable[[Model, str], list[Target]],
                 out: Path, *, cfg: SolverConfig | None, prior: Prior | None, data_weight: float, size: int | None,
                 chunk: int = 8, recipe: Recipe | str | None = None, batch: int = 1, diversity: float = 0.0,
                 diversity_layer: str | None = None) -> dict:
    """One unit per `chunk` targets (solved together); `batch` pictures per target."""
    units: list[Unit] = []
    for model in models:
        s = size or model.input_size
        for layer in expand_layers(model, layer_spec):
            targets = targets_for(model, layer)
            rec, ucfg, uprior = resolve_settings("maximize", recipe, cfg, prior, 4)
            for start in range(0, len(targets), chunk):
                part = targets[start:start + chunk]
                labels = [t.label() for t in part]
                key = slug(f"maximize_{model.name}_{layer}_{labels[0]}" + (f"-{labels[-1]}" if len(part) > 1 else ""))
                settings = {**_base_settings(model, "maximize", rec, ucfg, uprior, data_weight, s), "layer": layer,
                            "targets": labels, "batch": batch, "diversity": diversity,
                            "diversity_layer": diversity_layer}

                def run(model=model, layer=layer, part=part, s=s, rec=rec, ucfg=ucfg, uprior=uprior):
                    r, info = maximize(model, layer, part, size=s, prior=uprior, data_weight=data_weight,
                                       config=ucfg, recipe=rec, batch=batch, diversity=diversity,
                                       diversity_layer=diversity_layer)
                    quality = {"activation_ratio": activation_ratio(info["final_activation"], info["reference_scale"]),
                               "naturalness": naturalness(r.images), **_class_scores(model, r.images, part, batch)}
                    return r.images, {**r.summary(), **info, **quality}

                title = f"{model.name} {layer}" if len(models) > 1 else layer
                units.append(Unit(key, title, {**settings, "chunk_titles": labels}, run))
    done, interrupted = execute(units, out, "maximize")
    imgs, titles, records = [], [], []
    for u in done:
        per = u.settings.get("batch", 1)
        for i, im in enumerate(u.images):
            label = u.settings["chunk_titles"][i // per]
            res = u.results
            imgs.append(im)
            titles.append(f"{u.title} {label}" + (f" #{i % per + 1}" if per > 1 else ""))
            record = {"file": u.key, "layer": u.settings["layer"], "target": label,
                      "start_activation": res["start_activation"][i], "final_activation": res["final_activation"][i],
                      "reference_scale": res["reference_scale"][i], "activation_ratio": res["activation_ratio"][i],
                      "spectrum_slope": res["naturalness"][i]["spectrum_slope"]}
            if "judge_rank" in res:
                record["judge_rank"] = res["judge_rank"][i]
            records.append(record)
    grid = out / "maximize_grid.png"
    if imgs:
        image_grid(imgs, titles, grid, ncols=min(len(imgs), max(4, math.ceil(math.sqrt(len(imgs))))))
    summary = {"units": records, "grid": grid.name, "interrupted": interrupted}
    write_json(summary, out / "maximize_summary.json")
    return summary


# ------------------------------------------------------------------------------------------- caricature
def run_caricature(models: Sequence[Model], image: str, layer_spec: str, out: Path, *, cfg: SolverConfig | None,
                   prior: Prior | None, data_weight: float, size: int | None, cosine_power: float = 0.0,
                   recipe: Recipe | str | None = None) -> dict:
    img = load_image(image)
    units: list[Unit] = []
    for model in models:
        s = size or model.input_size
        for layer in expand_layers(model, layer_spec):
            key = slug(f"caricature_{model.name}_{image.replace('sample:', '')}_{layer}")
            rec, ucfg, uprior = resolve_settings("caricature", recipe, cfg, prior, auto_jitter(model, [layer], s))
            settings = {**_base_settings(model, "caricature", rec, ucfg, uprior, data_weight, s), "image": image,
                        "layer": layer, "cosine_power": cosine_power}

            def run(model=model, layer=layer, s=s, rec=rec, ucfg=ucfg, uprior=uprior):
                r = caricature(model, img, layer, size=s, prior=uprior, data_weight=data_weight,
                               cosine_power=cosine_power, config=ucfg, recipe=rec)
                # <Phi(x0), Phi(x)> / ||Phi(x0)||^2: 1 at the start image, larger when the caricature works
                gain = [-v[0] / data_weight for k, v in r.terms.items() if k.startswith("caricature")][0]
                return r.images, {**r.summary(), "relative_response": gain, "naturalness": naturalness(r.images)}

            units.append(Unit(key, f"{model.name} {layer}" if len(models) > 1 else layer, settings, run))
    done, interrupted = execute(units, out, "caricature")
    original = sized_preprocess(models[0], size or models[0].input_size).geometry(img)[0]
    grid = out / slug(f"caricature_{image.replace('sample:', '')}_grid.png")
    image_grid([original] + [u.images[0] for u in done], ["input"] + [u.title for u in done], grid,
               ncols=min(len(done) + 1, 10))
    summary = {"image": image, "units": [{"file": u.key, "layer": u.settings["layer"],
                                          "relative_response": u.results["relative_response"],
                                          "terms": u.results["terms"], "seconds": u.results["seconds"]}
                                         for u in done], "grid": grid.name, "interrupted": interrupted}
    write_json(summary, out / slug(f"caricature_{image.replace('sample:', '')}_summary.json"))
    return summary


# ------------------------------------------------------------------------------------------- accentuate
def run_accentuate(model: Model, image: str, layer: str, targets: Sequence[Target], out: Path, *,
                   cfg: SolverConfig | None, prior: Prior | None, data_weight: float, size: int | None,
                   anchor_layer: str | None, anchor_weight: float, recipe: Recipe | str | None = None) -> dict:
    """One unit: the image accentuated towards each target (Hamblin et al. 2024), side by side."""
    img = load_image(image)
    s = size or model.input_size
    labels = [t.label() for t in targets]
    rec, ucfg, uprior = resolve_settings("accentuate", recipe, cfg, prior, auto_jitter(model, [layer], s))
    key = slug(f"accentuate_{model.name}_{image.replace('sample:', '')}_{layer}_{labels[0]}"
               + (f"-{labels[-1]}" if len(labels) > 1 else ""))
    settings = {**_base_settings(model, "accentuate", rec, ucfg, uprior, data_weight, s), "image": image,
                "layer": layer, "targets": labels, "anchor_layer": anchor_layer, "anchor_weight": anchor_weight}

    def run():
        r, info = accentuate(model, img, layer, targets, anchor_layer=anchor_layer, anchor_weight=anchor_weight,
                             size=s, prior=uprior, data_weight=data_weight, config=ucfg, recipe=rec)
        quality = {"activation_ratio": activation_ratio(info["final_activation"], info["reference_scale"]),
                   "naturalness": naturalness(r.images), **_class_scores(model, r.images, targets, 1)}
        return r.images, {**r.summary(), **info, **quality}

    done, interrupted = execute([Unit(key, layer, settings, run)], out, "accentuate")
    original = sized_preprocess(model, s).geometry(img)[0]
    grid = out / slug(f"accentuate_{image.replace('sample:', '')}_grid.png")
    summary = {"image": image, "layer": layer, "units": [], "grid": grid.name, "interrupted": interrupted}
    if done:
        res = done[0].results
        image_grid([original, *done[0].images], ["input"] + [f"{layer} {lab}" for lab in labels], grid,
                   ncols=min(len(labels) + 1, 6))
        summary["units"] = [{"file": key, "target": lab, "start_activation": res["start_activation"][i],
                             "final_activation": res["final_activation"][i],
                             "anchor_layer": res["anchor_layer"], **({"judge_rank": res["judge_rank"][i]}
                                                                     if "judge_rank" in res else {})}
                            for i, lab in enumerate(labels)]
    write_json(summary, out / slug(f"accentuate_{image.replace('sample:', '')}_summary.json"))
    return summary
