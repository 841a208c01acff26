# Two entry points for a fresh clone: `make demo` and `make test`.
# torch is pinned here (CPU wheel on this machine kind); the package itself asks only torch>=2.1.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
OUT    ?= demo-out

.PHONY: install demo test lint docs docs-check bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[lite,dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/cnnscope demo --out $(OUT)
	$(VENV)/bin/cnnscope report --quick --out $(OUT)/report

lint: install
	$(PY) -m ruff check cnnscope tests benchmarks examples docs

# the documentation site (Sphinx + the executed gallery) into build/docs, offline; any warning fails the build.
# The gallery's examples run here; one whose file did not change is not run again (docs/auto_examples keeps its hash)
docs: install
	$(PY) -m sphinx -W --keep-going -q -b html -d build/doctrees docs build/docs

# the built site in headless Chromium: every page loads without console errors, no broken local link or image,
# every gallery and method page shows a decoded, non-blank picture, the search finds DeSaliNet
docs-check: docs
	$(PY) -m pytest -q tests/test_docs_site.py

# two test processes (pytest-xdist): most tests run single-threaded jobs or CLI children, so two cores halve
# the wall time; tests that start a local Ray cluster share one process (xdist_group "ray")
test: lint docs
	$(PY) -m pytest -n 2 --dist loadgroup

bench: install
	$(PY) benchmarks/imagenet_top1.py
	$(PY) benchmarks/truncated_forward.py
	$(PY) benchmarks/preimage.py
	$(PY) benchmarks/feature_vis.py
	$(PY) benchmarks/backprop.py
	$(PY) benchmarks/hog.py
	$(PY) benchmarks/report.py

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info docs/auto_examples docs/reference/cli.rst docs/reference/api.rst
