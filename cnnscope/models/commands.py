"""The models family's verbs, run (declared in `verbs`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import progress
from ..data import picture_sources
from ..errors import CnnscopeError
from ..images import SAMPLES, image_batch, load_image
from ..layers import capture, format_table, get_layer, list_layers
from ..progress import table
from ..requests import load, out_file
from ..store import save_tensors, write_json
from ..verbs import Answer, Request
from .zoo import ZOO


def models(req: Request) -> Answer:
    rows = []
    for entry in ZOO.values():
        try:
            available = entry.default_weights() is not None
        except CnnscopeError:
            available = False
        status = "installed" if available else "not found: " + entry.weights_hint
        rows.append({"name": entry.name, "input_size": entry.preprocess.input_size,
                     "weights": "hand-crafted, no weights" if entry.handcrafted else status,
                     "description": entry.description})
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        table(f"{r['name']:<{width}}  {r['input_size']:>4}px  {r['description']}  [{r['weights']}]")
    table("\nUser models: --model path/to/file.py:factory  or  --model model.pt (TorchScript)")
    return Answer(list(ZOO.values()), rows)


def layers(req: Request) -> Answer:
    model = load(req)
    names = [n.strip() for n in (req.layer or "").split(",") if n.strip()]
    if names:
        rows = [get_layer(model, n.strip()) for n in names]
    else:
        rows = list_layers(model)
        if req.named:
            rows = [r for r in rows if r.alias]
    picked = getattr(type(model.net), "logits_field", "")
    table(f"# {model.name}: input 3x{model.input_size}x{model.input_size}; rf/stride/offset in input pixels "
          "(offset = centre of unit (0,0); 'all' = whole image; ~ = approximate)"
          + (f"; the logits are its forward's output{picked}" if picked else ""))
    table(format_table(rows))
    return Answer(rows, {**model.settings(), "layers": [r.to_dict() for r in rows]})


def _loaded(sources: list[str], bar: progress.Progress):
    for src in sources:
        yield load_image(src)
        bar.update()


def predict(req: Request) -> Answer:
    items = req.images if isinstance(req.images, list) else [req.images]
    if all(isinstance(i, str) for i in items):
        sources = picture_sources(items)  # every file's header checked before any work; folders expanded
        several = len(sources) > 1 or isinstance(req.images, list) or Path(items[0]).is_dir()
        model = load(req)
        # loaded as predicted, a chunk at a time (memory flat over a whole validation set); printed at the end,
        # so a file that fails to decode half-way leaves one error line and no partial table
        with progress.steps(len(sources), "predict", "image", show=len(sources) > 64) as bar:
            answers = model.predict(_loaded(sources, bar), k=req.top_k)
        names = sources
    else:
        several = isinstance(req.images, list) or (torch.is_tensor(req.images) and req.images.dim() == 4
                                                   and len(req.images) != 1)
        pictures = [load_image(i) for i in items] if isinstance(req.images, list) else image_batch(req.images)
        model = load(req)
        answers = model.predict(pictures, k=req.top_k)
        names = [f"picture {i}" for i in range(len(answers))]
    for src, preds in zip(names, answers):
        table(src)
        for rank, p in enumerate(preds, 1):
            table(f"  {rank}. {p.name:<32} {p.probability:6.3f}  (class {p.index})")
    out = [{"image": src, "top": [p.__dict__ for p in preds]} for src, preds in zip(names, answers)]
    return Answer(answers if several else answers[0], {**model.settings(), "predictions": out})


def activations(req: Request) -> Answer:
    if req.out:
        out_file(req.out, ".safetensors", req.force, req.label("out"))
    image = load_image(req.image)
    model = load(req)
    names = [n.strip() for n in req.layer.split(",") if n.strip()]
    start = time.perf_counter()
    feats = capture(model, model.prepare(image), names)
    seconds = time.perf_counter() - start
    rows = {name: {"shape": list(t.shape[1:]), "mean": float(t.mean()), "max": float(t.max()),
                   "positive": float((t > 0).float().mean())} for name, t in feats.items()}
    for name, t in feats.items():
        table(f"{name:<28} shape {'x'.join(map(str, t.shape[1:])):<14} mean {t.mean():9.4f}  "
              f"max {t.max():9.4f}  >0 {float((t > 0).float().mean()):.2f}")
    table(f"forward (truncated at the deepest layer): {seconds * 1000:.1f} ms")
    if req.out:
        settings = {**model.settings(), "image": req.image if isinstance(req.image, str) else "(in memory)",
                    "layers": names, "seed": req.seed}
        save_tensors({k: v[0] for k, v in feats.items()}, req.out, "cnnscope-activations-1",
                     settings=json.dumps(settings))
        write_json(settings, Path(req.out).with_suffix(".json"))
        table(f"wrote {req.out}")
    return Answer(dict(feats), {**model.settings(), "layers": rows, "milliseconds": round(seconds * 1000, 1)})


def samples(req: Request) -> Answer:
    table("  ".join(f"sample:{n}" for n in sorted(SAMPLES)))
    return Answer(sorted(SAMPLES), sorted(SAMPLES))
