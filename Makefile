# Two entry points for a fresh clone: `make demo` and `make test`.
# torch is pinned here (CPU wheel on this machine kind); the package itself asks only torch>=2.1.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
OUT    ?= demo-out

.PHONY: install demo test lint docs bench clean

# the API reference (pdoc, numpy docstrings); any warning fails the build; output in build/ (not committed)
DOC_MODULES := cnnscope cnnscope.api cnnscope.verbs cnnscope.models cnnscope.layers cnnscope.images cnnscope.data cnnscope.store \
               cnnscope.device cnnscope.targets cnnscope.progress cnnscope.jobs cnnscope.preimage cnnscope.backprop \
               cnnscope.transforms cnnscope.features cnnscope.viz

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
	$(PY) -m ruff check cnnscope tests benchmarks

docs: install
	$(PY) -W error -W ignore::DeprecationWarning -m pdoc -d numpy -o build/api $(DOC_MODULES)

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
	rm -rf $(VENV) $(OUT) build *.egg-info
