"""The static site of `cnnscope report`: index.html (model summary, layer table, links) and one page per
layer (inversions, the activation-maximisation atlas, top dataset patches, backprop strips), plus the
transformation analyses when computed. Built from the job records on disk, so a partial run (interrupted, or
still running elsewhere) gives a partial site: missing jobs are listed as not computed yet."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from ..jobs import Job, Run, execute
from ..layers import get_layer, list_layers
from ..preimage.jobs import png_names
from ..store import slug, write_json, write_text
from . import html
from .atlas import LAYER_KINDS, ReportSettings, analysis_name, compose, is_done, plan

EXTRA_STYLE = """
.atlas{display:flex;flex-wrap:wrap;gap:6px}.atlas figure{margin:0;width:112px}
.atlas img{width:112px;height:112px;image-rendering:auto}.atlas figcaption{font-size:.75rem}
.strip img{max-width:100%}.todo{color:#a55;font-size:.85rem}
nav a{margin-right:.8rem}
"""


def _page(title: str, sections: list[str], intro: str = "", nav: str = "") -> str:
    text = html.page(title, sections, nav + intro)
    return text.replace("</style>", EXTRA_STYLE + "</style>", 1)


def _linked(src: str, meta: str, caption: str, cls: str = "") -> str:
    """A figure whose picture links to the JSON with its settings and numbers."""
    c = f' class="{cls}"' if cls else ""
    return (f'<figure{c}><a href="{escape(meta)}"><img src="{escape(src)}" alt="{escape(caption)}" loading="lazy">'
            f"</a><figcaption>{escape(caption)}</figcaption></figure>")


def _results(out: Path, unit: Job) -> dict:
    return json.loads((out / f"{unit.key}.json").read_text())["results"]


def _rel(unit_key: str, from_dir: str) -> str:
    """Path of a unit's file stem relative to a page in folder `from_dir` (report-relative)."""
    depth = len(Path(from_dir).parts) if from_dir else 0
    return "../" * depth + unit_key


def _todo(units: list[Job]) -> str:
    return f'<p class="todo">{len(units)} job(s) not computed yet (run the same command again to finish).</p>'


def layer_page(out: Path, report: ReportSettings, layer: str, units: list[Job], info: dict) -> str:
    page_dir = "layers"
    mine = _layer_jobs(units, layer)
    sections = []
    for kind, title, blurb in (
        ("invert", "Inversions", "Pre-images from noise of each image's code at this layer (Mahendran & Vedaldi's "
         "objective with the invert verb's default recipe: lucid, or mv for hand-crafted features)."),
        ("maximize", "Activation maximisation atlas",
         "One image per channel that maximally excites the channel's centre neuron (recipe lucid: Fourier + "
         "decorrelated colour + transformation robustness); captions: activation over the natural-image maximum."),
        ("patches", "Top-activating dataset patches",
         "Per channel, the images whose strongest response is highest, cropped to the receptive field."),
        ("backprop-strip", "Backpropagation networks",
         "Image | DeConvNet | SaliNet | DeSaliNet from the neuron that responds most to the image."),
    ):
        ks = [u for u in mine if u.kind == kind]
        done = [u for u in ks if is_done(out, u)]
        missing = [u for u in ks if u not in done]
        parts = [f"<p>{escape(blurb)}</p>"]
        if kind == "invert":
            figs = []
            for u in done:
                err = _results(out, u)["normalised_error"][0]
                figs.append(_linked(_rel(u.key, page_dir) + ".png", _rel(u.key, page_dir) + ".json",
                                    f"{Path(u.key).name}: error {err:.3f}"))
            parts.append("".join(figs))
        elif kind == "maximize":
            figs = []
            for u in done:
                res = _results(out, u)  # quality scores: activation over the natural maximum, spectrum slope
                for i, (target, png) in enumerate(zip(u.targets, png_names(u.key, len(u.targets)))):
                    ratio = res["activation_ratio"][i]
                    score = "" if ratio is None else f" · {ratio:.1f}x"
                    figs.append(_linked(_rel(png, page_dir),
                                        _rel(u.key, page_dir) + ".json", f"channel {target.channel}{score}"))
            parts.append(f'<div class="atlas">{"".join(figs)}</div>')
        elif kind == "patches":
            for u in done:
                res = _results(out, u)
                folder = str(Path(u.key).parent)
                figs = [_linked(_rel(f"{folder}/c{int(c):04d}", page_dir) + ".png", _rel(u.key, page_dir) + ".json",
                                f"channel {c}") for c in res["channels"]]
                parts.append(f'<div class="atlas">{"".join(figs)}</div>')
        else:
            parts.append("".join(_linked(_rel(u.key, page_dir) + ".png", _rel(u.key, page_dir) + ".json",
                                         Path(u.key).name, "strip") for u in done))
        notes = dict.fromkeys(n for u in done for n in _results(out, u).get("notes", []))
        parts += [f'<p class="note">note: {escape(n)}</p>' for n in notes]  # (an all-zero code, unseen activations)
        if missing:
            parts.append(_todo(missing))
        sections.append(html.section(title, "".join(parts), kind))
    shape = "x".join(map(str, info["shape"]))
    intro = (f"<p>Output {shape}; receptive field {info.get('receptive_field') or '-'} px, "
             f"stride {info.get('stride') or '-'}, offset {info.get('offset') or '-'}.</p>")
    nav = '<nav><a href="../index.html">&larr; report</a></nav>'
    return _page(f"{report.model} · {layer}", sections, intro, nav)


def _layer_jobs(units: list[Job], layer: str | None = None) -> list[Job]:
    """The jobs of a layer's page (all layers' when `layer` is None)."""
    return [u for u in units if u.kind in LAYER_KINDS and (layer is None or u.layer == layer)]


def write_site(out: Path, report: ReportSettings, units: list[Job], model, run: dict) -> Path:
    """index.html, one page per layer, layers.json and report.json (with `run`'s counts) under `out`."""
    rows = list_layers(model)
    write_json([r.to_dict() for r in rows], out / "layers.json")
    infos = {layer: get_layer(model, layer).to_dict() for layer in report.layers}
    for layer in report.layers:
        write_text(layer_page(out, report, layer, units, infos[layer]), out / "layers" / f"{_file(layer)}.html")
    done = sum(is_done(out, u) for u in units)
    summary = (f"<p>Model <b>{escape(report.model)}</b> (weights: {escape(Path(str(model.weights)).name)}); "
               f"images: {escape(report.images or 'bundled samples')}; seed {report.seed}; "
               f"{done}/{len(units)} jobs computed. Settings: <a href=\"report.json\">report.json</a>; every "
               "figure links to the JSON of its settings and numbers.</p>")
    layer_rows = "".join(
        f'<tr><td><a href="layers/{escape(_file(layer))}.html">{escape(layer)}</a></td>'
        f'<td>{"x".join(map(str, infos[layer]["shape"]))}</td><td>{infos[layer].get("receptive_field") or "-"}</td>'
        f"<td>{infos[layer].get('stride') or '-'}</td>"
        f"<td>{sum(1 for u in _layer_jobs(units, layer) if is_done(out, u))}/"
        f"{len(_layer_jobs(units, layer))}</td></tr>"
        for layer in report.layers)
    sections = [html.section("Layers in this report",
                             "<table><thead><tr><th>layer</th><th>output</th><th>receptive field</th><th>stride</th>"
                             f"<th>jobs done</th></tr></thead><tbody>{layer_rows}</tbody></table>", "report-layers")]
    named = [r for r in rows if r.alias] or rows
    table_rows = []
    for r in named:
        d = r.to_dict()
        table_rows.append((r.alias or "", r.name, r.kind, "x".join(map(str, r.shape)),
                           "whole image" if r.is_global else d["receptive_field"],
                           d["stride"] if d["stride"] is not None else "-"))
    layer_table = html.table(("alias", "layer", "type", "output", "receptive field", "stride"), table_rows, max_rows=60)
    all_layers = '<p class="muted">All layers: <a href="layers.json">layers.json</a></p>'
    sections.append(html.section("Model layers", layer_table + all_layers, "model-layers"))
    analyses = [k for k, on in (("equivariance", report.equivariance), ("stitch", report.stitch_with)) if on]
    if analyses:
        names = [analysis_name(k, report) for k in analyses]
        figs = "".join(_linked(f"{n}.png", f"{n}.json", Path(n).name.replace("_", " "))
                       for n in names if (out / f"{n}.json").is_file())
        missing = [u for u in units if u.kind not in LAYER_KINDS and not is_done(out, u)]
        sections.append(html.section("Transformation analysis", figs + (_todo(missing) if missing else ""),
                                     "transforms"))
    write_json({"settings": report.to_dict(), "run": run, "units": len(units), "done": done}, out / "report.json")
    return write_text(_page(f"cnnscope report: {report.model}", sections, summary), out / "index.html")


def _file(layer: str) -> str:
    return slug(layer)


def build_report(out: Path, report: ReportSettings, model, *, workers: int = 1, ray: str | None = None,
                 progress: bool = True) -> tuple[list[Job], Run]:
    """Plan the report, run the jobs not yet done, draw the analyses and write the site.

    Returns
    -------
    jobs : list of Job
        The whole plan.
    run : Run
        What the engine did (reused, computed, interrupted).
    """
    jobs = plan(report, model)
    run = execute(jobs, out, workers=workers, ray=ray, progress=progress, desc="report")
    compose(out, report, jobs, run, model)
    counts = {"jobs": len(jobs), "already_done": run.reused, "computed": run.computed,
              "seconds": round(run.seconds, 2), "interrupted": run.interrupted}
    write_site(out, report, jobs, model, counts)
    return jobs, run
