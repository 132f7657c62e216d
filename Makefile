VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo
# pytest workers: one per core this process may use (nproc honours affinity and cpusets)
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install demo test test-heavy bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf $(DEMO)
	$(VENV)/bin/ltextract synth --out $(DEMO)/manual --classes 20 --seed 0
	$(VENV)/bin/ltextract build --manual-dir $(DEMO)/manual --splits-dir $(DEMO)/manual --out $(DEMO)/out
	$(VENV)/bin/ltextract verify $(DEMO)/out

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-heavy: install
	$(PY) -m pytest -q -m heavy

# BENCH_DATA: where the generated sets are kept (default: the cache dir); BENCH_ARGS e.g. --runs 5
bench: install
	$(PY) bench/bench.py $(if $(BENCH_DATA),--data $(BENCH_DATA)) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info
