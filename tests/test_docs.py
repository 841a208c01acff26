"""The documentation's sources, without building the site: the README stays short and names every verb, and the
generated CLI reference (docs/_ext/cnnscope_docs.py, what `make docs` renders) has every verb and option of the
declarations. The built site itself is checked in a browser by tests/test_docs_site.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cnnscope.verbs import registry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import cnnscope_docs  # noqa: E402  (the site's extension: a folder, not a package)


def test_readme_is_short_and_lists_every_verb():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    listed = set(re.findall(r"^\| `([a-z-]+)` \|", readme, flags=re.M))
    assert listed == set(registry()), set(registry()) ^ listed


def test_readme_links_point_at_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    assert len(targets) >= 20
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_cli_reference_has_every_verb_and_option():
    text = cnnscope_docs.cli_reference()
    for verb in registry().values():
        assert f".. _cli-{verb.name}:" in text and f".. program:: cnnscope {verb.name}" in text, verb.name
        section = text.split(f".. program:: cnnscope {verb.name}\n", 1)[1].split(".. _cli-", 1)[0]
        for option in verb.options:
            name = option.placeholder if option.positional else option.spelling
            assert f".. option:: {name}" in section, (verb.name, name)
        assert verb.example in section


def test_cli_reference_gives_each_default():
    text = cnnscope_docs.cli_reference()
    invert = text.split(".. program:: cnnscope invert\n", 1)[1].split(".. _cli-", 1)[0]
    assert re.search(r"\.\. option:: --restarts \S+\n\n   .*\(default 1\)", invert)
    assert "(default 20.0)" in invert.split(".. option:: --data-weight", 1)[1].split(".. option::", 1)[0]


def test_every_verb_has_a_method_or_reference_page():
    """A verb's page: a method page naming it in its title, or its section of the CLI reference (every verb)."""
    titles = " ".join(p.read_text().splitlines()[0] for p in (ROOT / "docs" / "methods").glob("*.md"))
    for verb in ("invert", "maximize", "accentuate", "caricature", "texture", "style-transfer", "saliency",
                 "backprop", "selectivity", "sanity", "equivariance", "stitch", "cka", "hog", "report", "reproduce"):
        assert f"`{verb}`" in titles, verb
