"""CPU and GPU side by side for Lite0 at 224 px: optimiser step (and its ratio to a bare forward+backward),
DeSaliNet map vs Captum's GuidedBackprop on the same device, one class visualisation, stitching one stage,
and atlas units per minute. Prints one column per device found (CUDA when this machine has it) and the ratio.

    python benchmarks/gpu.py [--iters 30] [--atlas-channels 8]
"""

import argparse
import tempfile
import time

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


def measure(device: str, iters: int, channels: int) -> dict[str, float]:
    model = load_model("efficientnet_lite0", device=device)
    x = model.prepare(load_image("sample:chelsea"))
    out: dict[str, float] = {}

    def fwd_bwd():
        xi = x.clone().requires_grad_(True)
        model(xi)[:, 281].sum().backward()

    out["bare forward+backward (s)"] = timed(device, fwd_bwd, 5)
    config = SolverConfig(iters=iters, progress=False)
    target = [Target("class", 281, layer="logits")]
    visualise = timed(device, lambda: maximize(model, "logits", target, size=224, recipe="lucid", config=config))
    out["optimiser step (s)"] = visualise / iters
    out["step / bare fwd+bwd"] = out["optimiser step (s)"] / out["bare forward+backward (s)"]
    out["class visualisation, 200 steps (s)"] = out["optimiser step (s)"] * 200
    out["DeSaliNet map (s)"] = timed(device, lambda: backprop_maps(model, x, target, "desalinet"), 5)
    try:
        from captum.attr import GuidedBackprop

        gbp = GuidedBackprop(model.net)
        out["Captum GuidedBackprop (s)"] = timed(device, lambda: gbp.attribute(x.clone(), target=281), 5)
    except ImportError:
        pass
    a, b = model, load_model("efficientnet_lite1", device=device)
    imgs, _ = image_set(a, None, 300, 0)
    i_fit, i_test = split(len(imgs), 2 / 3, 0)
    out["stitch one stage, 200 fit images (s)"] = timed(
        device, lambda: stitch_experiment(a, b, ["stage4"], imgs[i_fit], imgs[i_test],
                                          how=StitchFit(task_epochs=0, progress=False)))
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
    p.add_argument("--atlas-channels", type=int, default=8)
    args = p.parse_args()
    devices = ["cpu"] + [d for d in available() if d.startswith("cuda")][:1]
    print(f"devices: {', '.join(devices)}" + ("" if len(devices) > 1 else " (no CUDA here: CPU figures only)"))
    results = {d: measure(d, args.iters, args.atlas_channels) for d in devices}
    names = list(results["cpu"])
    header = f"{'measure':<40}" + "".join(f"{d:>14}" for d in devices)
    print(header + (f"{'cpu / gpu':>12}" if len(devices) > 1 else ""))
    for name in names:
        row = f"{name:<40}" + "".join(f"{results[d].get(name, float('nan')):14.4g}" for d in devices)
        if len(devices) > 1 and name in results[devices[1]]:
            gpu = results[devices[1]][name]
            ratio = gpu / results["cpu"][name] if "per minute" in name else results["cpu"][name] / gpu
            row += f"{ratio:12.1f}" if "/" not in name else ""
        print(row)


if __name__ == "__main__":
    main()
