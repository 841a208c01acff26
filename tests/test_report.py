"""`cnnscope report`: units, resume after a kill, identical files from 1 or 2 workers (and Ray), Chromium."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnscope.jobs import execute
from cnnscope.models import load_model
from cnnscope.report.atlas import ReportSettings, is_done, plan
from cnnscope.report.site import build_report

TINY = ReportSettings(model="efficientnet_lite0", layers=("stem", "stage2"), channels=2, iters=8, size=64,
                      examples=2, patch_images=4)


def _files(root: Path) -> dict[str, bytes]:
    """The units' files (not the site: report.json records timings, and pages are rebuilt on every run)."""
    site = {"report.json", "layers.json", "screenshot.png"}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in site and p.suffix != ".html"}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report1")
    model = load_model(TINY.model)
    units, _ = build_report(out, TINY, model, progress=False)
    return out, units, model


def test_every_unit_writes_its_files(tiny_report):
    out, units, _ = tiny_report
    kinds = {u.kind for u in units}
    assert kinds == {"invert", "maximize", "patches", "backprop-strip"}
    assert len(units) == 2 * (2 + 2 + 1 + 2)
    for u in units:
        assert is_done(out, u)
        meta = json.loads((out / f"{u.key}.json").read_text())
        assert meta["files"] and all((out / f).is_file() for f in meta["files"])
    errs = [json.loads((out / f"{u.key}.json").read_text())["results"]["normalised_error"][0]
            for u in units if u.kind == "invert"]
    assert all(0 < e < 1 for e in errs)
    page = (out / "layers" / "stage2.html").read_text()
    assert page.count("<img") == 2 + 2 + 2 + 2 and "not computed yet" not in page
    assert "atlas/stage2/c0001.json" in page  # figures link to their settings


def test_atlas_channels_batched_per_job(tmp_path):
    batched = TINY.__class__(**{**TINY.__dict__, "layers": ("stage2",), "channels": 3, "atlas_batch": 2,
                                "examples": 1})
    model = load_model(TINY.model)
    units, _ = build_report(tmp_path, batched, model, progress=False)
    atlas = [u for u in units if u.kind == "maximize"]
    assert [u.key for u in atlas] == ["atlas/stage2/c0000-c0001", "atlas/stage2/c0002"]
    assert [[t.channel for t in u.targets] for u in atlas] == [[0, 1], [2]]
    page = (tmp_path / "layers" / "stage2.html").read_text()
    for png in ("atlas/stage2/c0000-c0001_0.png", "atlas/stage2/c0000-c0001_1.png", "atlas/stage2/c0002.png"):
        assert (tmp_path / png).is_file() and f'"../{png}"' in page  # every channel's picture on the page
    assert "channel 1 · " in page and "channel 2 · " in page


def test_atlas_and_inversions_take_their_measured_step_counts():
    # the atlas' pictures run the recipe's measured count (issue 26: 128 steps keep every stage6 channel's score
    # at or above the 200 steps it ran before), the inversions 200; --iters sets both
    model = load_model(TINY.model)
    default = TINY.__class__(**{**TINY.__dict__, "iters": None})
    steps = {u.kind: u.solver.iters for u in plan(default, model) if u.kind in ("maximize", "invert")}
    assert steps == {"maximize": 128, "invert": 200}
    steps = {u.kind: u.solver.iters for u in plan(TINY, model) if u.kind in ("maximize", "invert")}
    assert steps == {"maximize": 8, "invert": 8}


def test_two_workers_write_byte_identical_files(tiny_report, tmp_path):
    out, units, _ = tiny_report
    run = execute(units, tmp_path, workers=2, progress=False)
    assert run.computed == len(units)
    assert _files(tmp_path) == _files(out)


@pytest.mark.xdist_group("ray")  # one local Ray cluster at a time
def test_ray_local_writes_the_same_files(tiny_report, tmp_path):
    ray = pytest.importorskip("ray")
    out, units, _ = tiny_report
    subset = [u for u in units if u.layer == "stem"]
    try:  # a machine that cannot start a local cluster is not a failure of ours
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as err:
        pytest.skip(f"Ray could not start a local cluster here: {err}")
    try:
        run = execute(subset, tmp_path, workers=2, ray="local", progress=False)
    finally:
        ray.shutdown()
    assert run.computed == len(subset)
    assert _files(tmp_path) == {k: v for k, v in _files(out).items() if k.split("/")[1] == "stem"}


def test_resume_after_kill_skips_finished_units_and_misses_none(tmp_path):
    cmd = [sys.executable, "-m", "cnnscope", "report", "--layers", "stem,stage2", "--channels", "4", "--iters",
           "30", "--size", "64", "--examples", "2", "--patch-images", "4", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(tmp_path.rglob("c*.json"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: as if the machine went away
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.json")}
    assert 3 <= len(finished) < 22, "the kill should land mid-run"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"{len(finished)} reused" in res.stdout
    for p, mtime in finished.items():  # finished units were not redone
        assert p.stat().st_mtime_ns == mtime
    model = load_model("efficientnet_lite0")
    settings = ReportSettings(model="efficientnet_lite0", layers=("stem", "stage2"), channels=4, iters=30, size=64,
                              examples=2, patch_images=4)
    units = plan(settings, model)
    assert all(is_done(tmp_path, u) for u in units)  # none missing
    assert not list(tmp_path.rglob("*.part"))  # no leftovers of the unit that was in flight
    unit_json = [p for p in tmp_path.rglob("*.json") if p.name not in ("report.json", "layers.json")]
    assert len(unit_json) == len(units)  # no duplicates


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_chromium(tiny_report):
    playwright = pytest.importorskip("playwright.sync_api")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run does)")
    out, _, _ = tiny_report
    pages = [out / "index.html"] + sorted((out / "layers").glob("*.html"))
    problems: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        for html in pages:
            page.goto(html.as_uri(), wait_until="load")
            page.evaluate("() => Promise.all([...document.images].map(i => i.complete ? 0 : "
                          "new Promise(r => { i.onload = i.onerror = r; })))")
            broken = page.evaluate("() => [...document.images].filter(i => !i.naturalWidth).map(i => i.src)")
            problems += [f"{html.name}: image did not load: {src}" for src in broken]
            links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
            problems += [f"{html.name}: dead link {u}" for u in links
                         if u.startswith("file://") and not Path(u[len("file://"):].split("#")[0]).exists()]
        page.goto((out / "layers" / "stage2.html").as_uri(), wait_until="load")
        page.screenshot(path=str(out / "screenshot.png"), full_page=True)
        browser.close()
    assert not problems, "\n".join(problems[:10])
    assert (out / "screenshot.png").stat().st_size > 10_000


def test_patch_search_in_chunks_finds_the_same_patches(monkeypatch):
    """The patch search keeps each channel's best response per picture, a chunk of pictures at a time (memory
    flat in --patch-images; 100 ImageNet pictures at the stem: 1.05 -> 0.64 GB peak), and decodes the winners
    again: the same patches as one pass over them all."""
    from cnnscope.report import atlas

    model = load_model("efficientnet_lite0")
    job = atlas.PatchesJob("patches/stem/patches", model.job_spec(), "stem", (0, 5, 17), None, 7, 4)
    monkeypatch.setattr(atlas, "PATCH_CHUNK", 100)
    whole = job.compute(model)
    monkeypatch.setattr(atlas, "PATCH_CHUNK", 3)
    chunked = job.compute(model)
    assert chunked.channels == whole.channels and len(whole.sources) == 7
    assert all(torch.equal(chunked.tiles[c], whole.tiles[c]) for c in (0, 5, 17))
