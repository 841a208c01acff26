"""The transformation-analysis findings of `cnnscope reproduce`: equivariance to flips and quarter turns,
invariance, stitching two networks, and equivalence across seeds and across training data.

Accuracy findings measure top-1 error when the images carry labels; without labels (the bundled samples,
a folder without labels.csv) they measure disagreement with the network's own prediction on the untransformed
image (equivariance) or with network B (stitching), and say so in `measured["metric"]`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..backprop.analysis import spearman
from ..data import image_store, split
from ..models import Model, ModelSpec, small_model
from ..transforms.cka import cka_permutation_test
from ..transforms.equivalence import StitchFit, features, stitch_experiment
from ..transforms.equivariance import INVARIANCE_THRESHOLD, EquivarianceFit, equivariance_experiment, fit_layers
from ..transforms.smallnets import make_dataset, train_small, untrained
from ..transforms.transform import Transform
from ..viz import plot_equivariance, plot_stitch
from .finding import FindingJob, FindingResult

TRANSFORMS = ("vflip", "hflip", "rot90")  # the equivariance findings' ids (`--transforms`)
# Lenc & Vedaldi (CVPR'15, IJCV'19), AlexNet on ImageNet, vflip: top-1 error without the transform, with it
# uncompensated, and with a learned M_g after conv1..conv5 — the reference beside our per-stage rows
LENC_VEDALDI_ALEXNET = {"no_transform": 0.43, "uncompensated": 0.75,
                        "learned": {"conv1": 0.43, "conv2": 0.46, "conv3": 0.46, "conv4": 0.48, "conv5": 0.51}}


def _split(model: Model, images: str | None, limit: int | None, seed: int):
    x, labels = image_store(model, images, limit, seed)  # in a file: memory flat in the number of images
    i_fit, i_test = split(len(x), 0.6, seed)
    if labels is None:
        return x.subset(i_fit), x.subset(i_test), None, None
    return x.subset(i_fit), x.subset(i_test), labels[i_fit], labels[i_test]


def _crops(crops: int | None, n_fit: int) -> int:
    """Crops per fit image: as given, or (None) enough for about 180 fit samples, at most 2 per image."""
    return crops if crops is not None else max(0, min(2, -(-180 // max(n_fit, 1)) - 1))


JUDGED = 120  # test pictures the equivariance findings judge over their splits, for a steady mean error
MAX_SPLITS = 3


def splits_for(n_test: int) -> int:
    """Fit/test splits whose test sets hold JUDGED pictures in all (at most MAX_SPLITS): three on 100 images (40
    test pictures each), one from 300 on — a split costs the whole fit, and one of 120 test pictures or more already
    gives a mean as steady as three of 40."""
    return max(1, min(MAX_SPLITS, math.ceil(JUDGED / max(n_test, 1))))


def _r(v, digits: int = 4):
    return None if v is None else round(float(v), digits)


# ------------------------------------------------------------------------------------------ equivariance
@dataclass(frozen=True)
class EquivarianceFinding(FindingJob):
    """Lenc & Vedaldi's four rows per stage for one transform (plus the spatial inverse alone)."""

    key: str
    model: ModelSpec
    transform: str
    layers: tuple[str, ...]
    images: str | None = None
    limit: int | None = None
    crops: int | None = None
    epochs: int = 0
    seed: int = 0
    # fit/test splits (seeds seed, seed+1, …): the rows give the first, and the spread over all; None: as many as it
    # takes for the test sets to judge JUDGED pictures in all, at most MAX_SPLITS
    splits: int | None = None
    kind = "finding-equivariance"
    cost = 540.0

    def compute(self, model: Model) -> FindingResult:
        runs, splits = [], self.splits
        for k in itertools.count():
            if splits is not None and k >= splits:
                break
            fit_x, test_x, fit_y, test_y = _split(model, self.images, self.limit, self.seed + k)
            if splits is None:
                splits = splits_for(len(test_x))
            runs.append(equivariance_experiment(model, self.layers, Transform.parse(self.transform), fit_x, test_x,
                                                fit_y, test_y,
                                                EquivarianceFit(self.epochs, self.seed + k,
                                                                crops=_crops(self.crops, len(fit_x)), progress=False)))
        r = runs[0]
        base = r["baseline"]
        gap = base["uncompensated"] - base["no_transform"]
        rows = [{"layer": row["layer"], "no_transform": _r(base["no_transform"]),
                 "uncompensated": _r(base["uncompensated"]), "spatial_only": _r(row["spatial_only"]),
                 "permutation": _r(row["permutation"]), "learned": _r(row["learned"]),
                 "gap_recovered": _r((base["uncompensated"] - row["learned"]) / gap) if gap > 0 else None,
                 "learned_r2": row["learned_r2"], "ridge": row["ridge"], "map": row["map"],
                 "fit_positions": row["fit_positions"], "positions_per_parameter": row["positions_per_parameter"],
                 "learning_curve": row["learning_curve"],
                 # "falling" when, in at least half the splits, the map fitted on all the fit images still does
                 # better on the held-back ones than on half of them: the data, not the network, is the limit
                 "curve": "falling" if 2 * sum(run["rows"][i]["curve"] == "falling" for run in runs) >= len(runs)
                 else "flat",
                 # the same row over every split: (learned, uncompensated) per split, and the learned map's range
                 "splits": [{"learned": _r(run["rows"][i]["learned"]), "uncompensated":
                             _r(run["baseline"]["uncompensated"]), "map": run["rows"][i]["map"]} for run in runs],
                 "learned_spread": [_r(min(run["rows"][i]["learned"] for run in runs)),
                                    _r(max(run["rows"][i]["learned"] for run in runs))]}
                for i, row in enumerate(r["rows"])]
        n_test = len(test_x)
        def mean(row, key):
            return sum(x[key] for x in row["splits"]) / len(row["splits"])

        # a layer fails when, averaged over the splits, the learned map does not beat the uncompensated network;
        # where its learning curve still falls, more fit images would still help: undetermined, not a failure
        failing = [row for row in rows if mean(row, "learned") >= mean(row, "uncompensated")]
        undetermined = [row for row in failing if row["curve"] == "falling"]
        failing = [row for row in failing if row["curve"] != "falling"]
        if gap < 2.0 / n_test:
            verdict = "inconclusive"
            note = (f"{model.name} is already invariant to {self.transform} here (error {base['no_transform']:.3f} "
                    f"without it, {base['uncompensated']:.3f} with it): there is nothing to compensate")
        elif not failing and undetermined:
            verdict = "inconclusive"
            note = ("undetermined at " + ", ".join(
                f"{row['layer']} (held-back error {row['learning_curve']['50%']:.3f} / "
                f"{row['learning_curve']['75%']:.3f} / {row['learning_curve']['100%']:.3f} with 50 / 75 / 100% of the "
                f"fit images; {row['positions_per_parameter']:g} fit positions per map parameter)"
                for row in undetermined) + ": the learned map does not yet beat the uncompensated network, but its "
                "error still falls with more fit images, so more images, not another network, may compensate")
        elif not failing:
            verdict, note = "holds", ""
        else:
            verdict = "does not hold"
            note = ("learned compensation does not beat the uncompensated network at " +
                    ", ".join(f"{row['layer']} ({row['learned']:.3f} vs {row['uncompensated']:.3f} with "
                              + (f"{row['map']} fitted on {row['fit_positions']} positions" if row["ridge"] is not
                                 None else "the spatial inverse alone: no map fitted on "
                                 f"{row['fit_positions']} positions beat it on the held-back fifth")
                              + f"; R2 = {row['learned_r2']:.2f} of the features on held-out images; "
                              f"learning curve flat: {row['positions_per_parameter']:g} positions per parameter; "
                              f"{row['learned_spread'][0]:.3f}–{row['learned_spread'][1]:.3f} over "
                              f"{len(row['splits'])} splits)" for row in failing)
                    + f". This bounds what the estimator finds — a linear map of that support, chosen by the task on "
                    f"a held-back fifth of {len(fit_x)} fit images — not what the network represents: a wider "
                    "support or more fit images may still compensate (Lenc & Vedaldi's AlexNet, maps learned on "
                    "ImageNet's 1.2M images: error 0.43 without vflip, 0.75 uncompensated, 0.43–0.51 compensated "
                    "from conv1 to conv5)." + (" Undetermined, the learning curve still falling: " + ", ".join(
                        row["layer"] for row in undetermined) + "." if undetermined else ""))
        measured = {"metric": r["metric"], "transform": self.transform, "rows": rows, "fit_images": len(fit_x),
                    "test_images": n_test, "splits": len(runs),
                    "map": "m x m convolution after the spatial inverse, m and ridge chosen by the task on a "
                           "held-back fifth of the fit images (the spatial inverse alone a candidate)",
                    "lenc_vedaldi_alexnet": LENC_VEDALDI_ALEXNET if self.transform == "vflip" else None}
        return FindingResult(
            self.transform, f"a CNN's representation is equivariant to {self.transform}: a learned linear map M_g "
            "after the spatial inverse of g compensates the transform inside the network (Lenc & Vedaldi CVPR'15)",
            measured, "error with the learned map below the uncompensated error at every stage", verdict,
            len(fit_x) + n_test, note)

    def write(self, out: Path, result: FindingResult) -> list[str]:
        rows = result.measured["rows"]
        plot_equivariance({"rows": rows, "transform": self.transform, "metric": result.measured["metric"],
                           "baseline": {k: rows[0][k] for k in ("no_transform", "uncompensated")}},
                          out / f"{self.key}.png", self.model.name)
        return [f"{self.key}.png"]


# ------------------------------------------------------------------------------------------- invariance
@dataclass(frozen=True)
class InvarianceFinding(FindingJob):
    """Channels whose row of the learned M_g is the identity, for a transform the network was trained to
    ignore (hflip) and one it was not (vflip), against a random orthogonal null map."""

    key: str
    model: ModelSpec
    layers: tuple[str, ...]
    images: str | None = None
    limit: int | None = None
    crops: int | None = None
    seed: int = 0
    kind = "finding-invariance"
    cost = 185.0

    def compute(self, model: Model) -> FindingResult:
        fit_x, test_x, _, _ = _split(model, self.images, self.limit, self.seed)
        # both transforms at every stage from the same passes of the network
        fits = fit_layers(model, self.layers, [Transform.parse(name) for name in ("hflip", "vflip")], fit_x, test_x,
                          crops=_crops(self.crops, len(fit_x)), seed=self.seed)
        rows = []
        for layer in self.layers:
            row = {"layer": layer}
            for name in ("hflip", "vflip"):
                row |= {f"{name}_{k}": v for k, v in _invariance(fits[layer, name], self.seed).items()}
            rows.append(row)
        deepest = rows[-1]
        never_null = all(r["hflip_null_invariant"] == 0 and r["vflip_null_invariant"] == 0 for r in rows)
        holds = never_null and deepest["hflip_invariant_fraction"] > deepest["vflip_invariant_fraction"] + 0.05
        return FindingResult(
            "invariance", "invariance is task dependent: a network trained with horizontal flips has channels "
            "invariant to them (M_g's row is the identity) deep down, and few invariant to vertical flips "
            "(Lenc & Vedaldi)", {"threshold": INVARIANCE_THRESHOLD, "rows": rows},
            f"at the deepest stage a larger fraction of channels with score >= {INVARIANCE_THRESHOLD} for hflip "
            "than for vflip (by 0.05 or more), and no channel reaching it under the random orthogonal null map",
            "holds" if holds else "does not hold", len(fit_x) + len(test_x),
            ("" if holds else f"at {deepest['layer']}, {deepest['hflip_invariant_fraction']:.1%} of channels are "
             f"hflip-invariant and {deepest['vflip_invariant_fraction']:.1%} vflip-invariant with {len(fit_x)} fit "
             "images: deep maps need more images to be explained on held-out ones (the score multiplies by R2). ")
            + "score = share of the channel's row of M_g on its own channel (variance-weighted) x the fraction of "
            "the channel's variance the map explains on held-out images; the null is the same score for a random "
            "orthogonal map")


def _invariance(fit, seed: int) -> dict:
    scores, null = fit.invariance(seed)
    invariant = scores >= INVARIANCE_THRESHOLD
    return {"invariant": int(invariant.sum()), "channels": len(scores),
            "invariant_fraction": _r(invariant.double().mean()), "mean_score": _r(scores.mean()),
            "null_invariant": int((null >= INVARIANCE_THRESHOLD).sum()), "null_mean_score": _r(null.mean())}


# -------------------------------------------------------------------------------------------- stitching
@dataclass(frozen=True)
class StitchingFinding(FindingJob):
    """A's front, a map E, B's rest, per stage — naive, random, permutation, regression (and task) maps —
    with a null baseline: the regression map from a randomly initialised A."""

    key: str
    model: ModelSpec
    other: ModelSpec
    layers: tuple[str, ...]
    images: str | None = None
    limit: int | None = None
    epochs: int = 0
    seed: int = 0
    kind = "finding-stitching"
    cost = 530.0

    def models(self) -> tuple[ModelSpec, ...]:
        return (self.model, self.other, ModelSpec(self.model.name, self.model.weights, True, self.seed,
                                                  self.model.preprocess, self.model.classes))

    def compute(self, a: Model, b: Model, random_a: Model) -> FindingResult:
        data = _split(a, self.images, self.limit, self.seed)
        r = stitch_experiment(a, b, list(self.layers), *data, StitchFit(self.epochs, seed=self.seed, progress=False))
        null = stitch_experiment(random_a, b, list(self.layers), *data,  # the null's regression map alone
                                 StitchFit(0, seed=self.seed, progress=False, compare=False))
        key = "top1_error" if data[3] is not None else "disagreement_with_b"
        b_error = r["baseline"]["B"][key]
        rows = []
        for row, null_row in zip(r["rows"], null["rows"]):
            methods = [m for m in ("naive", "random", "permutation", "regression", "task") if m in row]
            rows.append({"layer": row["layer_a"], **{m: _r(row[m][key]) for m in methods},
                         "null": _r(null_row["regression"][key])})
        learned = [min(row["regression"], row.get("task", 1.0)) for row in rows]
        naive_fails = all(row.get("naive", 1.0) >= b_error + 0.3 for row in rows)
        recovered = [i for i, e in enumerate(learned) if e <= b_error + 0.1]
        trained = [i for i in recovered if rows[i]["null"] >= b_error + 0.3]  # where the null does not recover
        verdict = "holds" if naive_fails and 0 in recovered and trained else "does not hold"
        measured = {"metric": key, "a": a.name, "b": b.name, "a_alone": _r(r["baseline"]["A"][key]),
                    "b_alone": _r(b_error), "rows": rows}
        return FindingResult(
            "stitching", "two networks trained on the same task are equivalent at early layers: a learned linear "
            "map joins A's front to B's rest with little loss, while plugging one into the other unchanged fails "
            "(Lenc & Vedaldi CVPR'15)", measured,
            "naive stitching at least 0.3 worse than B at every stage; a learned map within 0.1 of B at the first "
            "stage; and at least one stage where the learned map recovers but the null (the same regression from a "
            "randomly initialised A) stays at least 0.3 worse than B", verdict, len(data[0]) + len(data[1]),
            f"{b.name} sees the images at {a.name}'s input size, so the grids match. Learned maps recover B at "
            f"{', '.join(rows[i]['layer'] for i in recovered) or 'no stage'}; the null recovers at "
            f"{', '.join(r['layer'] for r in rows if r['null'] <= b_error + 0.1) or 'no stage'} — first-layer "
            "features of any network, trained or not, are nearly linear in the pixels, so only where the null fails "
            "does equivalence say something about training")


    def write(self, out: Path, result: FindingResult) -> list[str]:
        m = result.measured
        baseline = {"A": {m["metric"]: m["a_alone"]}, "B": {m["metric"]: m["b_alone"]}}
        plot_stitch({"baseline": baseline}, m["rows"], m["metric"], out / f"{self.key}.png",
                    {"a": m["a"], "b": m["b"]})
        return [f"{self.key}.png"]


# ------------------------------------------------------------------------------------------ small nets
def _small_pairs(n_images: int):
    """Held-out `shapes` images and labels, split 4:1 into fit and test."""
    images, labels = make_dataset("shapes", n_images, seed=3)
    n_fit = n_images * 4 // 5
    return images[:n_fit], images[n_fit:], labels[:n_fit], labels[n_fit:]


def _stitch_small(a: Model, b: Model, data, epochs: int, seed: int) -> tuple[float, list[dict]]:
    r = stitch_experiment(a, b, ["block1", "block2", "block3", "block4"], *data,
                          StitchFit(epochs, seed=seed, progress=False))
    accuracy = 1 - r["baseline"]["B"]["top1_error"]
    rows = [{"block": row["layer_a"], "regression_accuracy": _r(1 - row["regression"]["top1_error"]),
             "task_accuracy": _r(1 - row["task"]["top1_error"]) if "task" in row else None} for row in r["rows"]]
    return accuracy, rows


@dataclass(frozen=True)
class SmallNetsFinding(FindingJob):
    """A finding on small ReLU + max-pool CNNs trained here (no model to load): `epochs` of training each,
    `task_epochs` for the task-loss stitch, `n_images` held-out `shapes` images (4:1 fit/test)."""

    key: str
    epochs: int = 8
    task_epochs: int = 2
    n_images: int = 600
    seed: int = 0

    def models(self) -> tuple[ModelSpec, ...]:
        return ()


@dataclass(frozen=True)
class SeedsFinding(SmallNetsFinding):
    """Small networks from two seeds, trained and untrained: stitched task accuracy relative to B alone, and CKA
    with a permutation p-value, per block."""

    kind = "finding-seeds"
    cost = 110.0

    def compute(self) -> FindingResult:
        data = _small_pairs(self.n_images)
        chance = 0.1
        trained = [small_model(train_small("shapes", s, self.epochs, progress=False)[0], f"shapes/seed{s}")
                   for s in (self.seed, self.seed + 1)]
        initial = [small_model(untrained(s), f"init/seed{s}") for s in (self.seed, self.seed + 1)]
        measured = {}
        for case, (a, b) in (("after_training", trained), ("before_training", initial)):
            b_acc, rows = _stitch_small(a, b, data, self.task_epochs, self.seed)
            skill = b_acc - chance
            for row in rows:
                best = max(v for v in (row["regression_accuracy"], row["task_accuracy"]) if v is not None)
                row["relative_to_b"] = _r((best - chance) / skill) if skill >= 0.1 else None
                fa = features(a, row["block"], a.preprocess.normalize(data[1]))
                fb = features(b, row["block"], b.preprocess.normalize(data[1]))
                cka, p = cka_permutation_test(fa, fb, 200, self.seed)
                row |= {"cka": _r(cka), "cka_p": _r(p)}
            measured[case] = {"b_alone_accuracy": _r(b_acc), "rows": rows}
        after = measured["after_training"]["rows"]
        before = measured["before_training"]["rows"]
        equivalent_after = all(r["relative_to_b"] is not None and r["relative_to_b"] >= 0.9 for r in after)
        equivalent_before = all(r["relative_to_b"] is not None and r["relative_to_b"] >= 0.9 for r in before)
        cka_lower_before = sum(rb["cka"] < ra["cka"] for ra, rb in zip(after, before)) > len(after) / 2
        verdict = "holds" if equivalent_after and not equivalent_before else "does not hold"
        note = (f"before training B alone is at chance ({measured['before_training']['b_alone_accuracy']:.2f} for "
                "10 classes): it has no task skill for a stitch to preserve, so it cannot be called equivalent by "
                "accuracy. " if before[0]["relative_to_b"] is None else "")
        note += ("CKA is lower before training at most blocks" if cka_lower_before else
                 "CKA does not separate them: untrained networks of one architecture are similar random functions "
                 "of the same input (CKA high, p small), so CKA alone would call them equivalent")
        return FindingResult(
            "seeds", "networks trained from different seeds are equivalent (stitching keeps the task accuracy); "
            "the same networks before training are not", measured,
            "after training: stitched accuracy >= 0.9 of B's skill above chance at every block; before training: "
            "not so", verdict, len(data[0]) + len(data[1]), note)


@dataclass(frozen=True)
class DataFinding(SmallNetsFinding):
    """A network trained on textures stitched into one trained on shapes: stitching error per block."""

    kind = "finding-data"
    cost = 90.0

    def compute(self) -> FindingResult:
        data = _small_pairs(self.n_images)
        a = small_model(train_small("textures", self.seed, self.epochs, progress=False)[0], "textures")
        b = small_model(train_small("shapes", self.seed + 1, self.epochs, progress=False)[0], "shapes")
        b_acc, rows = _stitch_small(a, b, data, self.task_epochs, self.seed)
        for row in rows:
            best = max(v for v in (row["regression_accuracy"], row["task_accuracy"]) if v is not None)
            row["stitched_error"] = _r(1 - best)
        errors = [row["stitched_error"] for row in rows]
        rho = spearman(torch.arange(len(errors), dtype=torch.float64), torch.tensor(errors, dtype=torch.float64))
        holds = rho >= 0.5 and errors[-1] > errors[0] + 0.05
        return FindingResult(
            "data", "networks trained on different data share their early layers, not their late ones: the cost "
            "of stitching grows with depth (Lenc & Vedaldi)", {"b_alone_error": _r(1 - b_acc), "rows": rows,
                                                                "spearman_depth_error": _r(rho, 3)},
            "Spearman correlation of depth and stitched error >= 0.5, the last block at least 0.05 worse than the "
            "first", "holds" if holds else "does not hold", len(data[0]) + len(data[1]),
            "A: trained on oriented textures; B: trained on shapes; both small ReLU + max-pool CNNs trained here, "
            "judged on held-out shapes")
