# The README's commands. `make demo` and `make test` install first when .venv/ is missing.
VENV := .venv
PY := $(VENV)/bin/python
GEOSR := $(VENV)/bin/geosr
export GEOSR_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test bench lint weights quality ablation clean faults fuzz

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m geosr.demo

# One pytest worker per core (at most 4: some tests hold a GiB or two); worksteal
# balances the few long subprocess tests. The memory tests measure their own process
# tree, so a neighbouring worker does not disturb them.
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist worksteal

# The long fault-injection runs: many random SIGKILL points, polled destinations,
# cluster workers and scheduler killed (the test suite runs short versions of each).
faults: install
	GEOSR_FAULTS_LONG=1 $(PY) -m pytest -q tests/test_resume.py tests/test_distributed_faults.py tests/test_malformed.py

# The fuzz targets over the reader and the tile planner, long (the suite runs 40 examples each).
fuzz: install
	GEOSR_FUZZ_EXAMPLES=3000 $(PY) -m pytest -q tests/test_fuzz.py

lint: install
	$(VENV)/bin/ruff check geosr tests benchmarks examples
	$(VENV)/bin/ruff format --check geosr tests benchmarks examples
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks.run

# Re-train the bundled weights from their recipes and bundle them into the package
# (about 40 minutes each on a 2-core CPU).
weights: install
	$(GEOSR) train --recipe pipelines/cnnrnn_fast_x4.toml --overwrite
	$(GEOSR) train --recipe pipelines/cnnrnn_fast_x2.toml --overwrite
	$(GEOSR) train --recipe pipelines/cnnrnn_best_x4.toml --overwrite
	mkdir -p geosr/weights
	cp runs/cnnrnn_fast_x4/cnnrnn-fast_x4.safetensors runs/cnnrnn_fast_x4/cnnrnn-fast_x4.json geosr/weights/
	cp runs/cnnrnn_fast_x2/cnnrnn-fast_x2.safetensors runs/cnnrnn_fast_x2/cnnrnn-fast_x2.json geosr/weights/
	cp runs/cnnrnn_best_x4/cnnrnn-best_x4.safetensors runs/cnnrnn_best_x4/cnnrnn-best_x4.json geosr/weights/
	$(PY) -m benchmarks.quality   # held-out Wald results into QUALITY.md and the cards

# Wald x4/x2 of the bundled weights on the held-out split: benchmarks/QUALITY.md
quality: install
	$(PY) -m benchmarks.quality

# Issue 3's ablation table (trains the variants that have no weights yet): benchmarks/ABLATION.md
ablation: install
	$(PY) -m benchmarks.ablation

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
