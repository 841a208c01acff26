"""The built documentation site (`make docs` → build/docs) in headless Chromium, as a reader meets it: every page
loads without console errors and fetches nothing from outside, no local link or image is broken, every gallery
and method page shows a picture that decoded, is at least 64 × 64 pixels and is not blank, the search finds
DeSaliNet, and the CLI reference names every verb and option of the declarations.

`make test` builds the site before the suite; run alone, these tests skip when there is no build (in CI, where
the build always comes first, they fail instead)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from cnnscope.verbs import registry

SITE = Path(os.environ.get("CNNSCOPE_DOCS_SITE") or Path(__file__).resolve().parent.parent / "build" / "docs")
pytestmark = pytest.mark.xdist_group("docs-site")

# the mean absolute deviation of a picture's grey levels (0-255) under which it counts as blank
BLANK = 3.0

IMAGE_STATS = """() => [...document.querySelectorAll('article img, .sphx-glr-single-img, .sphx-glr-multi-img')]
  .map(img => {
    const w = img.naturalWidth, h = img.naturalHeight;
    if (!w) return {src: img.src, w: 0, h: 0, spread: 0};
    const c = document.createElement('canvas'); c.width = Math.min(w, 256); c.height = Math.min(h, 256);
    const g = c.getContext('2d'); g.drawImage(img, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0, n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
    const mean = sum / n; let dev = 0;
    for (let i = 0; i < d.length; i += 4) dev += Math.abs((d[i] + d[i + 1] + d[i + 2]) / 3 - mean);
    return {src: img.src, w, h, spread: dev / n};
  })"""


def _built() -> Path:
    if not (SITE / "index.html").exists():
        if os.environ.get("CI"):
            pytest.fail("build/docs is missing: `make test` builds the site first")
        pytest.skip("no built site: run `make docs` first")
    return SITE


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if not p.relative_to(site).parts[0].startswith("_"))


@pytest.fixture(scope="module")
def served():
    site = _built()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run does)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _must_show_a_picture(relative: str) -> bool:
    parts = Path(relative).parts
    return (parts[0] == "methods" and relative != "methods/optimiser.html") or (
        parts[0] == "auto_examples" and Path(relative).name.startswith("plot_"))


def test_every_page_loads_with_its_links_and_pictures(served, browser):
    site, base = served
    problems: list[str] = []
    outside: list[str] = []
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).hostname == "127.0.0.1"
               else (outside.append(route.request.url), route.abort()))
    where = {"page": ""}
    page.on("console", lambda m: problems.append(f"{where['page']}: console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"{where['page']}: page error: {e}"))
    page.on("response", lambda r: problems.append(f"{where['page']}: {r.status} {r.url}") if r.status >= 400 else None)
    pages = _pages(site)
    with_pictures = 0
    for html in pages:
        relative = html.relative_to(site).as_posix()
        where["page"] = relative
        page.goto(base + relative, wait_until="load")
        page.evaluate("() => Promise.all([...document.images].map(i => i.complete ? 0 : "
                      "new Promise(r => { i.onload = i.onerror = r; })))")
        for src in page.evaluate("() => [...document.images].filter(i => !i.naturalWidth).map(i => i.src)"):
            problems.append(f"{relative}: image did not load: {src}")
        for href in page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)"):
            url = urlparse(urljoin(base + relative, href))
            if url.hostname == "127.0.0.1" and not (site / unquote(url.path).lstrip("/")).exists():
                problems.append(f"{relative}: broken link {href}")
        if _must_show_a_picture(relative):
            stats = page.evaluate(IMAGE_STATS)
            good = [s for s in stats if s["w"] >= 64 and s["h"] >= 64 and s["spread"] > BLANK]
            if good:
                with_pictures += 1
            else:
                problems.append(f"{relative}: no decoded, non-blank picture of at least 64x64 ({stats})")
    page.close()
    assert not outside, f"pages fetched from outside this site: {sorted(set(outside))[:5]}"
    assert not problems, "\n".join(problems[:20])
    assert len(pages) >= 40 and with_pictures >= 12, (len(pages), with_pictures)


def test_search_finds_desalinet(served, browser):
    site, base = served
    page = browser.new_page()
    page.goto(base + "search.html?q=DeSaliNet", wait_until="load")
    page.wait_for_function("() => document.querySelectorAll('#search-results li, ul.search li').length > 0",
                           timeout=20_000)
    found = page.evaluate("() => [...document.querySelectorAll('#search-results li a, ul.search li a')]"
                          ".map(a => a.getAttribute('href'))")
    page.close()
    assert any("methods/backprop" in f for f in found), found


def test_the_cli_reference_names_every_verb_and_option():
    """The built CLI reference has a section per verb and an entry per declared option (the ids Sphinx gives
    `.. option::` under `.. program:: cnnscope VERB`)."""
    html = (_built() / "reference" / "cli.html").read_text()
    missing = []
    for verb in registry().values():
        if f'id="cli-{verb.name}"' not in html:
            missing.append(verb.name)
        for option in verb.options:
            anchor = (f"cmdoption-cnnscope-{verb.name}-arg-{option.placeholder}" if option.positional
                      else f"cmdoption-cnnscope-{verb.name}-{option.spelling.lstrip('-')}")
            if f'id="{anchor}"' not in html:
                missing.append(f"{verb.name} {option.spelling}")
    assert not missing, missing


def test_every_example_ran_in_this_build():
    """Each gallery script has its page with its printed output and at least one picture made by it."""
    site = _built()
    scripts = sorted((Path(__file__).resolve().parent.parent / "examples").rglob("plot_*.py"))
    assert len(scripts) >= 12
    for script in scripts:
        page = site / "auto_examples" / script.parent.name / (script.stem + ".html")
        assert page.exists(), page
        text = page.read_text()
        assert "sphx-glr-script-out" in text and "sphx_glr_" + script.stem in text, script.name
