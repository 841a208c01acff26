"""CPU and GPU side by side for Lite0 at 224 px: optimiser step (and its ratio to a bare forward+backward),
the step per picture when --batch pictures are optimised together, DeSaliNet map vs Captum's GuidedBackprop
on the same device, one class visualisation, stitching one stage, and atlas units per minute. Prints one
column per device (CUDA when this machine has it) and the CPU / GPU ratio (the first of each).

    python benchmarks/gpu.py [--iters 30] [--batch 64] [--atlas-channels 8] [--devices cpu,cuda]
                             [--parts step,backprop,stitch,atlas] [--json FILE] [--against FILE]

--json writes the figures; --against FILE adds the columns of such a file measured on another machine (the
GPU machine's own CPU is not the CPU a user compares with: measure the CPU column here, the GPU's there).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from cnnscope.backprop.methods import backprop_maps
from cnnscope.data import image_set, split
from cnnscope.device import available
from cnnscope.images import load_image
from cnnscope.jobs import execute
from cnnscope.models import load_model
from cnnscope.preimage.solver import SolverConfig
from cnnscope.preimage.tasks import maximize
from cnnscope.report.atlas import ReportSettings, plan
from cnnscope.targets import Target
from cnnscope.transforms.equivalence import StitchFit, stitch_experiment


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn, repeat: int = 1) -> float:
    fn()  # warm-up (cuDNN autotuning, lazy initialisation)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeat


PARTS = ("step", "backprop", "stitch", "atlas")


def measure(device: str, iters: int, batch: int, channels: int, parts: tuple[str, ...]) -> dict[str, float]:
    model = load_model("efficientnet_lite0", device=device)
    x = model.prepare(load_image("sample:chelsea"))
    out: dict[str, float] = {}
    if "step" in parts:
        out.update(step_costs(model, x, iters, batch))
    if "backprop" in parts:
        out.update(backprop_costs(model, x))
    if "stitch" in parts:
        out.update(stitch_cost(model, device))
    if "atlas" in parts:
        out.update(atlas_rates(model, device, channels))
    return out


def step_costs(model, x, iters: int, batch: int) -> dict[str, float]:
    device, out = str(model.device), {}

    def fwd_bwd():
        xi = x.clone().requires_grad_(True)
        model(xi)[:, 281].sum().backward()

    out["bare forward+backward (s)"] = timed(device, fwd_bwd, 5)
    config = SolverConfig(iters=iters, progress=False)
    target = [Target("class", 281, layer="logits")]
    visualise = timed(device, lambda: maximize(model, "logits", target, size=224, recipe="lucid", config=config))
    out["optimiser step (s)"] = visualise / iters
    out["step / bare fwd+bwd"] = out["optimiser step (s)"] / out["bare forward+backward (s)"]
    out["class visualisation, 192 steps (s)"] = out["optimiser step (s)"] * 192
    if batch > 1:  # the atlas's way of filling a GPU: one picture per channel, solved together
        many = [Target("neuron", c) for c in range(batch)]  # stage6 has 192 channels
        together = timed(device, lambda: maximize(model, "stage6", many, size=224, recipe="lucid", config=config))
        out["pictures solved together"] = batch
        out["step per picture, batched (s)"] = together / iters / batch
    return out


def backprop_costs(model, x) -> dict[str, float]:
    device, out = str(model.device), {}
    target = [Target("class", 281, layer="logits")]
    out["DeSaliNet map (s)"] = timed(device, lambda: backprop_maps(model, x, target, "desalinet"), 5)
    try:
        from captum.attr import GuidedBackprop

        gbp = GuidedBackprop(model.net)
        out["Captum GuidedBackprop (s)"] = timed(device, lambda: gbp.attribute(x.clone(), target=281), 5)
    except ImportError:
        pass
    return out


def stitch_cost(model, device: str) -> dict[str, float]:
    out = {}
    a, b = model, load_model("efficientnet_lite1", device=device)
    imgs, _ = image_set(a, None, 300, 0)
    i_fit, i_test = split(len(imgs), 2 / 3, 0)
    out["stitch one stage, 200 fit images (s)"] = timed(
        device, lambda: stitch_experiment(a, b, ["stage4"], imgs[i_fit], imgs[i_test],
                                          how=StitchFit(task_epochs=0, progress=False)))
    return out


def atlas_rates(model, device: str, channels: int) -> dict[str, float]:
    out = {}
    for batch in (1, channels):  # one channel per job, then all of them solved together (report --atlas-batch)
        settings = ReportSettings("efficientnet_lite0", layers=("stage6",), channels=channels, atlas_batch=batch)
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [j for j in plan(settings, model) if j.kind == "maximize"]  # the atlas's units (default recipe)
            start = time.perf_counter()
            execute(jobs, tmp, progress=False)
            _sync(device)
            out[f"atlas channels per minute (batch {batch})"] = 60 * channels / max(time.perf_counter() - start, 1e-9)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--batch", type=int, default=1, help="also time the step per picture with this many together")
    p.add_argument("--atlas-channels", type=int, default=8)
    p.add_argument("--devices", default=None, help="comma-separated (default: cpu and the first CUDA device)")
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--against", default=None, help="--json files (comma-separated) from other machines, shown "
                   "beside as columns (A), (B), ...; --devices none only shows them")
    args = p.parse_args()
    cuda = [d for d in available() if d.startswith("cuda")][:1]
    devices = [d for d in args.devices.split(",") if d != "none"] if args.devices else ["cpu"] + cuda
    parts = tuple(args.parts.split(","))
    results = {d: measure(d, args.iters, args.batch, args.atlas_channels, parts) for d in devices}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    for i, other in enumerate(args.against.split(",") if args.against else []):
        results = {f"{d} ({chr(65 + i)})": r for d, r in json.loads(Path(other).read_text()).items()} | results
    columns = list(results)
    print(f"devices: {', '.join(columns)}")
    names = list(dict.fromkeys(n for r in results.values() for n in r))
    cpu = next((c for c in columns if c.startswith("cpu")), None)
    gpu = next((c for c in columns if c.startswith("cuda")), None)
    print(f"{'measure':<42}" + "".join(f"{c:>16}" for c in columns) + (f"{'cpu / gpu':>12}" if cpu and gpu else ""))
    for name in names:
        row = f"{name:<42}" + "".join(f"{results[c].get(name, float('nan')):16.4g}" for c in columns)
        timing = "(s)" in name or "per minute" in name
        if cpu and gpu and timing and name in results[cpu] and name in results[gpu]:
            a, b = results[cpu][name], results[gpu][name]
            row += f"{(b / a if 'per minute' in name else a / b):12.1f}"
        print(row)


if __name__ == "__main__":
    main()
