"""Compatibility table: cnnscope's every family on CNNs nobody here wrote, beside Captum's DeConvNet and guided
backprop on the same networks (issue 24). Prints the two Markdown tables of the site's compatibility page
(docs/concepts/compatibility.md).

    .venv/bin/python benchmarks/compat.py

The networks are the conformance test's (`tests/external_zoo.py`): six Hugging Face ``transformers`` classifiers
and ``efficientnet_pytorch``'s EfficientNet, random weights (He-normal, BatchNorm statistics measured on the
bundled samples), 64 px. Per method: "ok", or the one-line reason it cannot apply. Then, for a class logit of
``sample:chelsea``: the correlation of each DeConvNet / guided-backprop map with the plain gradient — ours and
Captum's — and whether Captum silently returned the gradient (r = 1).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cnnscope  # noqa: E402
from tests import external_zoo  # noqa: E402


class Logits(nn.Module):
    """What a Captum user must write for a Hugging Face model: a forward that returns the logits tensor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        out = self.net(x)
        return out if isinstance(out, torch.Tensor) else out.logits


def captum_maps(net: nn.Module, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    from captum.attr import Deconvolution, GuidedBackprop, Saliency

    wrapped = Logits(net).eval()
    out = {}
    for name, cls in (("gradient", Saliency), ("deconvnet", Deconvolution), ("guided", GuidedBackprop)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                attribution = cls(wrapped).attribute(x.clone().requires_grad_(True), target=k,
                                                     **({"abs": False} if cls is Saliency else {}))
                out[name] = attribution[0].detach()
            except Exception as err:  # Captum's own failure, one line
                out[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:60]}"
    return out


def corr(a, b) -> float | str:
    if isinstance(a, str) or isinstance(b, str):
        return a if isinstance(a, str) else b
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1])


def fmt(r) -> str:
    if isinstance(r, str):
        return f"fails ({r})"
    return f"{r:.3f}" + (" **= gradient**" if r > 0.9999 else "")


def main() -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        table = external_zoo.compatibility_table(Path(tmp))  # the table the documentation site shows
    print(f"# conformance of {len(external_zoo.ARCHITECTURES)} architectures: {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    maps_rows = []
    for name, build in external_zoo.ARCHITECTURES.items():
        net = build()
        model = cnnscope.load_model(net, preprocess={"input_size": external_zoo.SIZE})
        x = model.prepare(cnnscope.load_image("sample:chelsea"))
        theirs = captum_maps(net, x, 3)
        ours = {m: cnnscope.saliency(model, "sample:chelsea", classes=3, method=m) for m in
                ("salinet", "deconvnet", "desalinet")}
        grad = next(iter(ours["salinet"].maps.values()))
        maps_rows.append((name, ours["deconvnet"].coverage["summary"],
                          corr(grad, next(iter(ours["deconvnet"].maps.values()))),
                          corr(grad, next(iter(ours["desalinet"].maps.values()))),
                          corr(theirs["gradient"], theirs["deconvnet"]), corr(theirs["gradient"], theirs["guided"])))

    print(table)
    print("| architecture | nonlinearities the rules reach | ours: DeConvNet r(gradient) | ours: DeSaliNet "
          "r(gradient) | Captum Deconvolution r(gradient) | Captum GuidedBackprop r(gradient) |")
    print("|---|---|---|---|---|---|")
    for name, summary, dec, des, c_dec, c_gb in maps_rows:
        print(f"| {name} | {summary} | {fmt(dec)} | {fmt(des)} | {fmt(c_dec)} | {fmt(c_gb)} |")


if __name__ == "__main__":
    main()
