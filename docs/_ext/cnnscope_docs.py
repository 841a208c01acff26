"""The site's references, generated from the code at every build (never written by hand).

- ``reference/cli.rst``: every verb of ``cnnscope``, from the verb declarations (`cnnscope.verbs.registry`):
  its summary, usage, each option with its flag, placeholder, default and help, its example and the Python
  function made from the same declaration. ``tests/test_docs.py`` checks that no verb or option is missing.
- ``reference/api.rst``: one ``autofunction`` per verb function and the lower layers, from their docstrings.
- ``concepts/compatibility_table.md``: every method run on seven CNNs nobody here wrote (``tests/external_zoo.py``,
  random weights, 64 px; about two minutes), made again only when cnnscope's code or the zoo changed: its first line
  is the hash of that code, and the page is committed with it, so a clone builds it again only after a change.

Both go into the source folder's ``reference/`` before Sphinx reads it (they are not committed).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from cnnscope.cli import build_parser, help_of
from cnnscope.verbs import Flag, registry

# the output options every verb's parser adds beside its declared options (cli._add)
OUTPUT_OPTIONS = (("-q, --quiet", "print nothing but errors (with --json: the JSON)"),
                  ("-v, --verbose", "also report inner loops (solver steps, epochs) when not on a terminal"))


def _heading(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def _indent(text: str, by: str = "   ") -> str:
    return "\n".join(by + line if line.strip() else "" for line in text.splitlines())


def _literal(text: str) -> str:
    return f"``{text}``" if text else ""


def cli_reference() -> str:
    """The CLI reference as reStructuredText: a section per verb, an ``option`` entry per option."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    out = [".. This page is generated from cnnscope's verb declarations at every build; do not edit.", "",
           ".. _cli-reference:", "", _heading("Command-line reference", "="),
           "Every verb of ``cnnscope``, made from the same declaration as its Python function (``cnnscope VERB "
           "--help`` prints the same). Each also takes ``-q/--quiet`` and ``-v/--verbose``; those that print a table "
           "take ``--json``. Bad input is one line ``cnnscope: error: …`` and exit code 2.", ""]
    out += [".. list-table::", "   :header-rows: 1", "", "   * - verb", "     - what it does", "     - Python"]
    for verb in registry().values():
        out += [f"   * - :ref:`cnnscope {verb.name} <cli-{verb.name}>`", f"     - {verb.summary}",
                f"     - {_literal('cnnscope.' + verb.api_name + '()') if verb.api_name else '(CLI only)'}"]
    out.append("")
    for verb in registry().values():
        sub = subparsers[verb.name]
        out += [f".. _cli-{verb.name}:", "", _heading(f"cnnscope {verb.name}", "-"), verb.summary + ".", ""]
        if verb.doc:
            out += [verb.doc, ""]
        out += ["::", "", _indent(sub.format_usage().replace("usage: ", "").strip()), ""]
        if verb.formerly:
            out += ["Formerly " + ", ".join(_literal(f"cnnscope {w}") for w in verb.formerly)
                    + " (still accepted, with a notice).", ""]
        out += [f"Python: :func:`cnnscope.{verb.api_name}`" if verb.api_name else "Python: none (CLI only).", ""]
        out += [f".. program:: cnnscope {verb.name}", ""]
        group = None
        for option in verb.options:
            if option.group != group and option.group:
                out += [f"*{option.group}*", ""]
            group = option.group
            name = option.placeholder if option.positional else option.spelling
            if not option.positional and not isinstance(option.kind, Flag):
                name += f" {option.placeholder}"
            out += [f".. option:: {name}", "", _indent(_escape(help_of(option)) + _extra(option)), ""]
        out += ["*output*", ""]
        for flags, text in OUTPUT_OPTIONS:
            out += [f".. option:: {flags}", "", _indent(text), ""]
        if verb.json:
            out += [".. option:: --json", "", _indent("print the table as JSON on stdout instead"), ""]
        out += ["Example::", "", _indent(verb.example), ""]
    return "\n".join(out) + "\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")


def _extra(option) -> str:
    notes = []
    if option.required:
        notes.append("required")
    if option.exclusive:
        notes.append("excludes the other options of its group")
    if option.repeat:
        notes.append("may be given several times")
    choices = getattr(option.kind, "choices", None)
    if choices:
        notes.append("one of " + ", ".join(_literal(str(c)) for c in choices))
    return ("; " + "; ".join(notes) + ".") if notes else ""


LOWER_LAYERS = {
    "Results (what the verb functions return)": [
        "cnnscope.preimage.jobs.PictureResult", "cnnscope.preimage.jobs.InvertResult",
        "cnnscope.preimage.jobs.ActivationResult", "cnnscope.preimage.jobs.CaricatureResult",
        "cnnscope.preimage.jobs.StyleResult", "cnnscope.backprop.jobs.SaliencyResult",
        "cnnscope.backprop.jobs.SelectivityResult", "cnnscope.backprop.jobs.SanityResult",
        "cnnscope.transforms.jobs.EquivarianceResult", "cnnscope.transforms.handcrafted.FeatureEquivarianceResult",
        "cnnscope.transforms.jobs.StitchResult", "cnnscope.transforms.jobs.CkaResult",
        "cnnscope.features.jobs.HogResult", "cnnscope.report.commands.ReportResult",
        "cnnscope.report.commands.FindingsResult"],
    "Models and pictures": ["cnnscope.load_model", "cnnscope.models.Model", "cnnscope.models.Preprocess",
                            "cnnscope.load_image", "cnnscope.save_image", "cnnscope.Target"],
    "Layers": ["cnnscope.layers.capture", "cnnscope.layers.Capture", "cnnscope.layers.get_layer",
               "cnnscope.layers.resolve"],
    "Pre-images: the one solver and its terms": ["cnnscope.preimage.solve", "cnnscope.preimage.SolverConfig",
                                                 "cnnscope.preimage.Representation", "cnnscope.preimage.TV",
                                                 "cnnscope.preimage.AlphaNorm"],
    "Backpropagation networks": ["cnnscope.backprop.BackpropRules", "cnnscope.backprop.backprop_maps"],
    "Jobs": ["cnnscope.jobs.execute", "cnnscope.jobs.Job", "cnnscope.jobs.Result"],
    "Errors": ["cnnscope.CnnscopeError"],
}


def api_reference() -> str:
    out = [".. This page is generated from cnnscope's verb declarations at every build; do not edit.", "",
           _heading("Python reference", "="),
           "One function per verb, made from the verb's declaration (the keywords are the CLI's options; "
           ":ref:`cli-reference` lists the same). Without ``out`` a call computes in this process and returns "
           "typed results; with ``out`` it writes what the CLI writes and returns what ``--json`` prints.", "",
           _heading("Verbs", "-"), ".. currentmodule:: cnnscope", ""]
    for verb in registry().values():
        if verb.api_name:
            out += [f".. autofunction:: cnnscope.{verb.api_name}", ""]
    for title, names in LOWER_LAYERS.items():
        out += [_heading(title, "-")]
        for name in names:
            kind = "autoclass" if name.rsplit(".", 1)[1][0].isupper() else "autofunction"
            out += [f".. {kind}:: {name}", ""]
    return "\n".join(out) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    # an unchanged page keeps its time stamp, so Sphinx does not read it again
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app) -> None:
    folder = Path(app.srcdir) / "reference"
    folder.mkdir(exist_ok=True)
    _write_if_changed(folder / "cli.rst", cli_reference())
    _write_if_changed(folder / "api.rst", api_reference())


def offline_run_times(app) -> None:
    """sphinx-gallery's run-time pages load jQuery and DataTables from CDNs (to sort the table): drop that block,
    so the site fetches nothing; the table stays, sorted by time already."""
    for page in Path(app.srcdir).rglob("sg_execution_times.rst"):
        text = page.read_text()
        start = text.find("  .. raw:: html")
        end = text.find("  .. list-table::")
        if start >= 0 and end > start:
            _write_if_changed(page, text[:start] + text[end:])


# the gallery's reading order within each section (sphinx-gallery's `within_subsection_order`)
GALLERY_ORDER = ("plot_inversion_depth", "plot_activation_maximisation", "plot_caricature", "plot_texture_style",
                 "plot_talk_figure", "plot_selectivity", "plot_sanity", "plot_equivariance", "plot_stitching_cka",
                 "plot_hog", "plot_own_model", "plot_reproduce", "plot_report")


def gallery_order(filename: str) -> tuple[int, str]:
    stem = Path(filename).stem
    return (GALLERY_ORDER.index(stem) if stem in GALLERY_ORDER else len(GALLERY_ORDER), stem)


def _code_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([*(root / "cnnscope").rglob("*.py"), root / "tests" / "external_zoo.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def compatibility(app) -> None:
    root = Path(app.srcdir).parent
    page = Path(app.srcdir) / "concepts" / "compatibility_table.md"
    stamp = f"<!-- generated by docs/_ext/cnnscope_docs.py from the code {_code_hash(root)} -->\n"
    if page.exists() and page.read_text().startswith(stamp):
        return
    sys.path.insert(0, str(root / "tests"))
    import external_zoo  # the test-only zoo of external CNNs (dev extra), imported only when the table is made

    with tempfile.TemporaryDirectory() as tmp:
        page.write_text(stamp + "\n" + external_zoo.compatibility_table(Path(tmp)))


def setup(app):
    app.connect("builder-inited", compatibility)
    app.connect("builder-inited", generate)
    app.connect("builder-inited", offline_run_times, priority=900)  # after sphinx-gallery wrote them (500)
    return {"parallel_read_safe": True, "version": "1"}
