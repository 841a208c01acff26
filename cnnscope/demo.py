"""`cnnscope demo`: one HTML page showing what cnnscope does, section by section.

Each section is a function (context -> HTML); later features append theirs to SECTIONS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .images import load_image, save_image, write_json, write_text
from .layers import list_layers
from .models import DEFAULT_MODEL, Model, load_model
from .report import html
from .report.plots import bar_chart

DEFAULT_IMAGES = ("sample:chelsea", "sample:coffee")


@dataclass
class DemoContext:
    out: Path
    model: Model
    images: dict[str, object]  # source -> [3,H,W] tensor
    settings: dict = field(default_factory=dict)

    @staticmethod
    def slug(source: str) -> str:
        return "".join(c if c.isalnum() else "_" for c in Path(source.replace("sample:", "")).stem)


def section_predict(ctx: DemoContext) -> str:
    parts = []
    preds = ctx.model.predict(list(ctx.images.values()), k=5)
    ctx.settings["predictions"] = {}
    for (src, img), top in zip(ctx.images.items(), preds):
        slug = ctx.slug(src)
        save_image(ctx.model.preprocess.geometry(img)[0], ctx.out / f"{slug}_input.png")
        bar_chart([p.name for p in top], [p.probability for p in top], f"{ctx.model.name}: {src}",
                  ctx.out / f"{slug}_top5.png")
        ctx.settings["predictions"][src] = [p.__dict__ for p in top]
        parts.append(html.figure(f"{slug}_input.png", f"{src} as the network sees it "
                                 f"({ctx.model.input_size}px centre crop)", 224))
        parts.append(html.figure(f"{slug}_top5.png", f"top-5 classes for {src}"))
    return html.section("Predictions", "".join(parts), "predict")


def section_layers(ctx: DemoContext) -> str:
    rows = list_layers(ctx.model)
    write_json([r.to_dict() for r in rows], ctx.out / "layers.json")
    named = [r for r in rows if r.alias]
    body = ('<p>The main layers (friendly aliases; every module and call is addressable, see '
            '<a href="layers.json">layers.json</a> or <code>cnnscope layers</code>). Receptive field, '
            "stride and offset are in input pixels.</p>")
    table_rows = []
    for r in named:
        d = r.to_dict()
        rf = "whole image" if r.is_global else d["receptive_field"]
        table_rows.append((r.alias, r.name, r.kind, "x".join(map(str, r.shape)), rf,
                           d["stride"] if d["stride"] is not None else "-",
                           d["offset"] if d["offset"] is not None else "-"))
    body += html.table(("alias", "layer", "type", "output", "receptive field", "stride", "offset"), table_rows)
    return html.section("Layers", body, "layers")


SECTIONS: list[tuple[str, Callable[[DemoContext], str]]] = [
    ("predictions", section_predict),
    ("layers", section_layers),
]


def run_demo(out: str | Path = "demo-out", model_name: str | None = None,
             images: Sequence[str] | None = None) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        from .errors import CnnscopeError

        raise CnnscopeError(f"--out {out}: exists and is not a folder")
    sources = list(images or DEFAULT_IMAGES)
    loaded = {src: load_image(src) for src in sources}
    model = load_model(model_name or DEFAULT_MODEL)
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out, model, loaded, {**model.settings(), "images": sources})
    start = time.perf_counter()
    sections = []
    for _name, fn in tqdm(SECTIONS, desc="demo", unit="section"):
        sections.append(fn(ctx))
    ctx.settings["seconds"] = round(time.perf_counter() - start, 2)
    write_json(ctx.settings, out / "demo.json")
    intro = (f"<p>Model <b>{model.name}</b> (weights: {html.escape(Path(model.weights).name)}). "
             f'Settings and numbers: <a href="demo.json">demo.json</a>.</p>')
    return write_text(html.page("cnnscope demo", sections, intro), out / "index.html")
