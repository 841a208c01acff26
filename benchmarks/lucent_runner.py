"""Runs Lucent's defaults on cnnscope's Lite0, one unit at a time (called by feature_vis.py inside the
benchmark's throw-away environment: torch-lucent + kornia 0.4.1 + stand-ins on PYTHONPATH).

Usage: python lucent_runner.py UNITS.json OUT_DIR   (UNITS: [{"key", "layer", "channel"}])
Writes OUT_DIR/KEY.png per unit and OUT_DIR/lucent_times.json.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lucent.optvis import objectives, param, render, transform
from PIL import Image

from cnnscope.models import load_model


def main() -> None:
    units = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    model = load_model("efficientnet_lite0")
    net = model.net
    mean = torch.tensor(model.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.preprocess.std).view(1, 3, 1, 1)
    times = {}
    for u in units:
        torch.manual_seed(0)
        np.random.seed(0)
        # Lucent's defaults: 128 px Fourier + decorrelated image, standard transforms, Adam 0.05, 512 steps,
        # upsampled to 224; its ImageNet normalisation swapped for the model's own (TF-style) one
        transforms = transform.standard_transforms + [lambda x: (x - mean) / std]
        start = time.perf_counter()
        images = render.render_vis(net, objectives.channel(u["layer"], u["channel"]),
                                   param_f=lambda: param.image(128), transforms=transforms, preprocess=False,
                                   thresholds=(512,), progress=False, show_image=False)
        times[u["key"]] = time.perf_counter() - start
        Image.fromarray((np.clip(images[-1][0], 0, 1) * 255).round().astype(np.uint8)).save(out / f"{u['key']}.png")
        print(f"lucent {u['key']}: {times[u['key']]:.1f} s", flush=True)
    (out / "lucent_times.json").write_text(json.dumps(times))


if __name__ == "__main__":
    main()
