# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck check chaos bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/suno-mp4 demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not chaos" -W error::ResourceWarning

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict suno_mp4

check: lint typecheck test

# The long runs: 1,000 chaos jobs, 10,000 fuzzed callbacks, 10,000 create/cancel cycles.
chaos: $(STAMP)
	SUNO_MP4_FUZZ_EXAMPLES=10000 SUNO_MP4_CYCLES=10000 \
		$(BIN)/python -m pytest -q -s -p no:randomly tests/test_chaos.py tests/test_hardening.py

# The benchmarks need matplotlib (the `bench` extra) for their plot; `make test` does not.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
