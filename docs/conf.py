"""Sphinx configuration of cnnscope's site (`make docs`: build/docs, offline, warnings are errors).

The gallery (`examples/`) runs on every build; an example whose file did not change is not run again
(sphinx-gallery keeps each example's hash beside its output in docs/auto_examples)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "cnnscope"
author = "the cnnscope authors"
copyright = "2026, the cnnscope authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into the site (_static/mathjax)
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "sphinx_design",
    "cnnscope_docs",  # the CLI and API references, generated from the verb declarations
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "concepts/compatibility_table.md", "auto_examples/**/*.ipynb", "auto_examples/**/*.py",
                    "auto_examples/**/*.zip", "auto_examples/**/*.codeobj.json"]
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3


numpydoc_show_class_members = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"

html_theme = "furo"
html_title = "cnnscope"
html_static_path = ["_static"]
html_css_files = ["cnnscope.css"]
html_show_sourcelink = False
html_theme_options = {"source_repository": "", "navigation_with_keys": True}
pygments_style = "friendly"

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|quickstart",
    "subsection_order": ["../examples/preimage", "../examples/backprop", "../examples/transforms",
                         "../examples/models", "../examples/reproduce"],
    "within_subsection_order": "cnnscope_docs.gallery_order",
    "download_all_examples": False,
    "remove_config_comments": True,
    "capture_repr": (),
    "show_memory": False,
    "write_computation_times": True,
    "abort_on_example_error": True,
    "default_thumb_file": os.path.join(os.path.dirname(__file__), "_static", "thumb.png"),
    "matplotlib_animations": False,
    "image_srcset": [],
    "reset_modules": ("matplotlib",),
    "run_stale_examples": False,
}
