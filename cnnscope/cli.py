"""The `cnnscope` command. Every verb is a thin layer over the Python API of the same name."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import CnnscopeError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        sys.stderr.write(f"cnnscope: error: {message} (see: {self.prog} --help)\n")
        sys.exit(2)


def _floats3(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, got '{text}'") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers (R,G,B), got '{text}'")
    return values


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _model_options(p: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                       help="zoo name, path/file.py:factory, or TorchScript file (default efficientnet_lite0)")
    else:
        p.add_argument("--model", default=None,
                       help="zoo name, path/file.py:factory, or TorchScript file (default efficientnet_lite0)")
    g = p.add_argument_group("model options")
    g.add_argument("--weights", metavar="PATH", help="checkpoint (.pth/.pt/.safetensors) to load strictly")
    g.add_argument("--random-weights", action="store_true", help="keep the seeded random initialisation")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--input-size", type=_positive_int, help="network input size in px (user models)")
    g.add_argument("--resize", type=_positive_int, help="shorter side before the centre crop")
    g.add_argument("--mean", type=_floats3, help="normalisation mean R,G,B in [0,1] units")
    g.add_argument("--std", type=_floats3, help="normalisation std R,G,B in [0,1] units")
    g.add_argument("--classes", metavar="FILE", help="class names, one per line (default: ImageNet)")


def _load(args):
    from .models import DEFAULT_MODEL, load_model

    overrides = {"input_size": args.input_size, "resize": args.resize, "mean": args.mean, "std": args.std}
    return load_model(args.model or DEFAULT_MODEL, weights=args.weights, random_weights=args.random_weights,
                      seed=args.seed, preprocess=overrides, classes=args.classes)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnscope", description="Understand what a CNN represents.")
    parser.add_argument("--version", action="version", version=f"cnnscope {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="layer table: output shape, receptive field, stride, offset")
    _model_options(p, positional=True)
    p.add_argument("--layer", action="append", metavar="NAME", help="only these layers (repeatable)")
    p.add_argument("--named", action="store_true", help="only layers with a friendly alias")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("predict", help="top-k ImageNet classes for images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file or sample:NAME")
    _model_options(p)
    p.add_argument("--top-k", type=_positive_int, default=5, help="how many classes (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("activations", help="capture activations at named layers (forward truncated)")
    p.add_argument("image", metavar="IMAGE", help="image file or sample:NAME")
    _model_options(p)
    p.add_argument("--layer", action="append", required=True, metavar="NAME", help="layer (repeatable)")
    p.add_argument("--out", metavar="FILE", help="save as .safetensors (+ .json settings beside it)")
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser("demo", help="write the demo HTML page + figures into a folder")
    p.add_argument("--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)")
    p.add_argument("--model", default=None, help="zoo model (default efficientnet_lite0)")
    p.add_argument("--images", nargs="+", default=None, metavar="IMAGE",
                   help="images (default sample:chelsea sample:coffee)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("samples", help="list the bundled sample images (use as sample:NAME)")
    p.set_defaults(func=cmd_samples)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def cmd_models(args) -> None:
    from .models import ZOO

    rows = []
    for entry in ZOO.values():
        try:
            available = entry.default_weights() is not None
        except CnnscopeError:
            available = False
        rows.append({"name": entry.name, "input_size": entry.preprocess.input_size,
                     "weights": "installed" if available else "not found: " + entry.weights_hint,
                     "description": entry.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['input_size']:>4}px  {r['description']}  [{r['weights']}]")
    print("\nUser models: --model path/to/file.py:factory  or  --model model.pt (TorchScript)")


def cmd_layers(args) -> None:
    from .layers import format_table, get_layer, list_layers

    model = _load(args)
    if args.layer:
        rows = [get_layer(model, n) for n in args.layer]
    else:
        rows = list_layers(model)
        if args.named:
            rows = [r for r in rows if r.alias]
    if args.json:
        print(json.dumps({**model.settings(), "layers": [r.to_dict() for r in rows]}, indent=2))
        return
    print(f"# {model.name}: input 3x{model.input_size}x{model.input_size}; rf/stride/offset in input pixels "
          "(offset = centre of unit (0,0); 'all' = whole image; ~ = approximate)")
    print(format_table(rows))


def cmd_predict(args) -> None:
    from .images import load_image

    images = [load_image(src) for src in args.images]  # validate every input before any work
    model = _load(args)
    results = model.predict(images, k=args.top_k)
    if args.json:
        out = [{"image": src, "top": [p.__dict__ for p in preds]} for src, preds in zip(args.images, results)]
        print(json.dumps({**model.settings(), "predictions": out}, indent=2))
        return
    for src, preds in zip(args.images, results):
        print(src)
        for rank, p in enumerate(preds, 1):
            print(f"  {rank}. {p.name:<32} {p.probability:6.3f}  (class {p.index})")


def cmd_activations(args) -> None:
    from .images import atomic_path, load_image, write_json
    from .layers import capture

    if args.out and not args.out.endswith(".safetensors"):
        raise CnnscopeError(f"--out {args.out}: must end in .safetensors")
    image = load_image(args.image)
    model = _load(args)
    start = time.perf_counter()
    feats = capture(model, model.prepare(image), args.layer)
    seconds = time.perf_counter() - start
    for name, t in feats.items():
        print(f"{name:<28} shape {'x'.join(map(str, t.shape[1:])):<14} mean {t.mean():9.4f}  "
              f"max {t.max():9.4f}  >0 {float((t > 0).float().mean()):.2f}")
    print(f"forward (truncated at the deepest layer): {seconds * 1000:.1f} ms")
    if args.out:
        from safetensors.torch import save_file

        with atomic_path(args.out) as tmp:
            save_file({k: v[0].contiguous() for k, v in feats.items()}, str(tmp))
        write_json({**model.settings(), "image": args.image, "layers": args.layer, "seed": args.seed},
                   Path(args.out).with_suffix(".json"))
        print(f"wrote {args.out}")


def cmd_demo(args) -> None:
    from .demo import run_demo

    path = run_demo(args.out, model_name=args.model, images=args.images)
    print(f"wrote {path}")


def cmd_samples(args) -> None:
    from .images import sample_names

    print("  ".join(f"sample:{n}" for n in sample_names()))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except CnnscopeError as err:
        sys.stderr.write(f"cnnscope: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("cnnscope: interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `cnnscope layers | head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
