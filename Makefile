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
	$(VENV)/bin/ltextract synth --out $(DEMO)/hub --classes 20 --seed 0 --shape hub-parquet
	$(VENV)/bin/ltextract build --manual-dir $(DEMO)/hub --splits-dir $(DEMO)/hub --out $(DEMO)/out-hub
	$(VENV)/bin/ltextract verify $(DEMO)/out-hub
	diff -r -x .ltextract -x ltextract.json $(DEMO)/out $(DEMO)/out-hub && echo "the Hub's parquet shards give the same files as the tars"
	$(VENV)/bin/ltextract build --manual-dir $(DEMO)/manual --splits-dir $(DEMO)/manual --out $(DEMO)/out -q --split forward50 --split uniform
	$(VENV)/bin/ltextract synth --benchmark imagenet100_lt --out $(DEMO)/in100 --classes 20 --seed 0
	$(VENV)/bin/ltextract build --benchmark imagenet100_lt --manual-dir $(DEMO)/in100 --splits-dir $(DEMO)/in100 --out $(DEMO)/in100_out -q
	$(VENV)/bin/ltextract synth --benchmark places_lt --shape easyformat --out $(DEMO)/places --classes 20 --seed 0
	$(VENV)/bin/ltextract build --benchmark places_lt --manual-dir $(DEMO)/places --splits-dir $(DEMO)/places --out $(DEMO)/places_out -q --layout lists
	$(VENV)/bin/ltextract verify $(DEMO)/out
	$(VENV)/bin/ltextract verify $(DEMO)/in100_out
	$(VENV)/bin/ltextract verify $(DEMO)/places_out
	$(VENV)/bin/ltextract stats $(DEMO)/places_out --export $(DEMO)/places_out/meta

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-heavy: install
	$(PY) -m pytest -q -m heavy

# BENCH_DATA: where the generated sets are kept (default: the cache dir); BENCH_ARGS e.g. --runs 5
bench: install
	$(PY) bench/bench.py $(if $(BENCH_DATA),--data $(BENCH_DATA)) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info
