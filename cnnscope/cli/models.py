"""Verbs about models themselves: models, layers, predict, activations, samples."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import progress
from ..data import picture_sources
from ..errors import CnnscopeError
from ..images import SAMPLES, load_image
from ..layers import capture, format_table, get_layer, list_layers
from ..models import ZOO
from ..store import save_tensors, write_json
from .numbers import positive_int
from .options import load, model_options, out_file, run_options


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="layer table: output shape, receptive field, stride, offset")
    model_options(p, positional=True)
    run_options(p, jobs=False)
    p.add_argument("--layer", action="append", metavar="NAME", help="only these layers (repeatable)")
    p.add_argument("--named", action="store_true", help="only layers with a friendly alias")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("predict", help="top-k ImageNet classes for images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file, sample:NAME, or a folder (its images)")
    model_options(p)
    run_options(p, jobs=False)
    p.add_argument("--top-k", type=positive_int, default=5, help="how many classes (default 5)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("activations", help="capture activations at named layers (forward truncated)")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    model_options(p)
    run_options(p, jobs=False)
    p.add_argument("--layer", action="append", required=True, metavar="NAME", help="layer (repeatable)")
    p.add_argument("--out", metavar="FILE", help="save as .safetensors (+ .json settings beside it)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser("samples", help="list the bundled sample images (use as sample:NAME)")
    p.set_defaults(func=cmd_samples)


def cmd_models(args) -> list[dict]:
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
        print(f"{r['name']:<{width}}  {r['input_size']:>4}px  {r['description']}  [{r['weights']}]")
    print("\nUser models: --model path/to/file.py:factory  or  --model model.pt (TorchScript)")
    return rows


def cmd_layers(args) -> dict:
    model = load(args)
    if args.layer:
        rows = [get_layer(model, n) for n in args.layer]
    else:
        rows = list_layers(model)
        if args.named:
            rows = [r for r in rows if r.alias]
    picked = getattr(type(model.net), "logits_field", "")
    print(f"# {model.name}: input 3x{model.input_size}x{model.input_size}; rf/stride/offset in input pixels "
          "(offset = centre of unit (0,0); 'all' = whole image; ~ = approximate)"
          + (f"; the logits are its forward's output{picked}" if picked else ""))
    print(format_table(rows))
    return {**model.settings(), "layers": [r.to_dict() for r in rows]}


def _loaded(sources: list[str], bar: progress.Progress):
    for src in sources:
        yield load_image(src)
        bar.update()


def cmd_predict(args) -> dict:
    sources = picture_sources(args.images)  # every file's header checked before any work
    model = load(args)
    # loaded as predicted, a chunk at a time (memory flat over a whole validation set); printed at the end, so
    # a file that fails to decode half-way leaves one error line and no partial table
    with progress.steps(len(sources), "predict", "image", show=len(sources) > 64) as bar:
        results = model.predict(_loaded(sources, bar), k=args.top_k)
    for src, preds in zip(sources, results):
        print(src)
        for rank, p in enumerate(preds, 1):
            print(f"  {rank}. {p.name:<32} {p.probability:6.3f}  (class {p.index})")
    out = [{"image": src, "top": [p.__dict__ for p in preds]} for src, preds in zip(sources, results)]
    return {**model.settings(), "predictions": out}


def cmd_activations(args) -> dict:
    if args.out:
        out_file(args.out, ".safetensors", args.force)
    image = load_image(args.image)
    model = load(args)
    start = time.perf_counter()
    feats = capture(model, model.prepare(image), args.layer)
    seconds = time.perf_counter() - start
    table = {name: {"shape": list(t.shape[1:]), "mean": float(t.mean()), "max": float(t.max()),
                    "positive": float((t > 0).float().mean())} for name, t in feats.items()}
    for name, t in feats.items():
        print(f"{name:<28} shape {'x'.join(map(str, t.shape[1:])):<14} mean {t.mean():9.4f}  "
              f"max {t.max():9.4f}  >0 {float((t > 0).float().mean()):.2f}")
    print(f"forward (truncated at the deepest layer): {seconds * 1000:.1f} ms")
    if args.out:
        settings = {**model.settings(), "image": args.image, "layers": args.layer, "seed": args.seed}
        save_tensors({k: v[0] for k, v in feats.items()}, args.out, "cnnscope-activations-1",
                     settings=json.dumps(settings))
        write_json(settings, Path(args.out).with_suffix(".json"))
        print(f"wrote {args.out}")
    return {**model.settings(), "layers": table, "milliseconds": round(seconds * 1000, 1)}


def cmd_samples(args) -> None:
    print("  ".join(f"sample:{n}" for n in sorted(SAMPLES)))
