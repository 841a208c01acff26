"""Data and files for the transformation-analysis verbs (shared by equivalence and, later, equivariance)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from ..images import atomic_path, list_folder, load_image, write_json, write_text
from ..models import Model
from ..report.plots import save_figure

METHODS = ("naive", "random", "permutation", "regression", "task")
DEFAULT_SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "retina", "ihc", "hubble", "camera", "coins", "brick")


def image_set(model: Model, folder: str | None, limit: int | None, seed: int = 0,
              crops_per_sample: int = 8) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[N,3,S,S] images in [0,1] at the model's input size, with integer labels when the folder has a
    labels.csv. Default (no folder): random crops of the bundled samples, unlabelled, so it runs anywhere."""
    size = model.input_size
    if folder is not None:
        items = list_folder(folder, limit)
        images = torch.cat([model.preprocess.geometry(load_image(p)) for p, _ in items])
        labels = [lab for _, lab in items]
        has = all(isinstance(lab, int) for lab in labels)
        return images, torch.tensor(labels) if has else None
    gen = torch.Generator().manual_seed(seed)
    from ..preimage.generator import random_crops

    pool = [load_image(f"sample:{n}") for n in DEFAULT_SAMPLES]
    n = limit or len(pool) * crops_per_sample
    return random_crops(pool, n, size, gen), None


def stitch_table(result: dict, metric: str) -> list[dict]:
    rows = []
    for key in ("A", "B"):
        rows.append({"layer": key + " alone", **{m: result["baseline"][key].get(metric) for m in METHODS}})
    for r in result["rows"]:
        rows.append({"layer": r["layer_a"] if r["layer_a"] == r["layer_b"] else f"{r['layer_a']}->{r['layer_b']}",
                     **{m: (r[m].get(metric) if m in r else None) for m in METHODS}})
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'layer':<22}" + "".join(f"{m:>13}" for m in METHODS)
    lines = [head]
    for r in rows:
        if r["layer"].endswith("alone"):
            val = next(v for v in r.values() if isinstance(v, float))
            lines.append(f"{r['layer']:<22}{val:13.3f}")
        else:
            lines.append(f"{r['layer']:<22}" + "".join(f"{'-':>13}" if r[m] is None else f"{r[m]:13.3f}"
                                                      for m in METHODS))
    return "\n".join(lines)


def write_stitch_outputs(out: Path, name: str, result: dict, metric: str, settings: dict) -> dict:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    rows = stitch_table(result, metric)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["layer", *METHODS])
    writer.writeheader()
    writer.writerows(rows)
    write_text(buf.getvalue(), out / f"{name}.csv")
    tensors = {}
    for r in result["rows"]:
        for method, s in r["_stitches"].items():
            for k, v in s.state_dict().items():
                tensors[f"{r['layer_a']}|{r['layer_b']}|{method}|{k}"] = v.contiguous()
    with atomic_path(out / f"{name}_stitches.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"settings": str(settings)})
    plot_stitch(result, rows, metric, out / f"{name}.png", settings)
    clean = [{k: v for k, v in r.items() if k != "_stitches"} for r in result["rows"]]
    summary = {"settings": settings, "metric": metric, "baseline": result["baseline"], "rows": clean,
               "table": rows, "files": [f"{name}.csv", f"{name}.png", f"{name}_stitches.safetensors"]}
    write_json(summary, out / f"{name}.json")
    return summary


def plot_stitch(result: dict, rows: list[dict], metric: str, path: Path, settings: dict) -> None:
    import matplotlib.pyplot as plt

    layer_rows = [r for r in rows if not r["layer"].endswith("alone")]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = list(range(len(layer_rows)))
    for m in METHODS:
        ys = [r[m] for r in layer_rows]
        if any(y is not None for y in ys):
            ax.plot([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], marker="o",
                    label=m)
    for key, style in (("A", ":"), ("B", "--")):
        ax.axhline(result["baseline"][key].get(metric, 0), color="#555", ls=style, lw=1, label=f"{key} alone")
    ax.set_xticks(xs, [r["layer"] for r in layer_rows], rotation=30, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"stitching {settings['a']} -> {settings['b']}", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def cka_heatmap(matrix: list[list[float]], rows: list[str], cols: list[str], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.55 * len(cols) + 2.5, 0.45 * len(rows) + 1.8))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma", origin="lower")
    ax.set_xticks(range(len(cols)), cols, rotation=60, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def plot_equivariance(result: dict, path: Path, model_name: str) -> None:
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for key, label in (("spatial_only", "compensated: spatial inverse"), ("permutation", "+ channel permutation"),
                       ("learned", "+ learned channel map")):
        ax.plot(xs, [r[key] for r in rows], marker="o", label=label)
    ax.axhline(result["baseline"]["no_transform"], color="#555", ls=":", lw=1, label="no transform")
    ax.axhline(result["baseline"]["uncompensated"], color="#a33", ls="--", lw=1, label="transformed, uncompensated")
    ax.set_xticks(xs, [r["layer"] for r in rows], rotation=30, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(result["metric"].replace("_", " "))
    ax.set_title(f"{model_name}: equivariance to {result['transform']}", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path)
