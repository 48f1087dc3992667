# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck check chaos bench scale redis-server chromium clean

# Two distributions from this checkout: the SDK (.) and its sandbox (./sandbox).
$(STAMP): pyproject.toml sandbox/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e './sandbox[render]' -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/suno-mp4 demo

# Tests that need a program from Debian: when it is missing, the package is installed only
# where that needs no password (root, as in CI); elsewhere those tests are skipped with the
# command that installs it (or set the environment variable to a binary).
# $(call debian_package,COMMAND,PACKAGE,ENVIRONMENT VARIABLE,WHICH TESTS)
define debian_package
	@command -v $(1) >/dev/null || [ -n "$$$(3)" ] || { \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing $(2) (Debian package)"; \
			apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
		else echo "$(1) not found: $(4) will be skipped" \
			"(sudo apt-get install $(2), or set $(3))"; fi; }
endef

# The Redis tests start their own redis-server on 127.0.0.1.
redis-server:
	$(call debian_package,redis-server,redis-server,SUNO_MP4_REDIS_SERVER,the Redis tests)

# The dashboard's browser test drives Chromium through Playwright (whose own browser
# download is not used).
chromium:
	$(call debian_package,chromium,chromium,SUNO_MP4_CHROMIUM,the dashboard's browser test)

# Two workers: the suite is mostly waiting on sockets and child processes.
test: $(STAMP) redis-server chromium
	$(BIN)/python -m pytest -q -n 2 -m "not chaos" -W error::ResourceWarning

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict suno_mp4 sandbox/suno_mp4_sandbox

check: lint typecheck test

# The long runs: 1,000 chaos jobs, 10,000 fuzzed callbacks, 10,000 create/cancel cycles,
# batches of 600 tracks SIGKILLed 10 times each (SDK and CLI), 5,000 schemathesis cases per
# dialect against the sandbox's OpenAPI document (plus 1,000 generate -> record-info runs).
chaos: $(STAMP)
	SUNO_MP4_FUZZ_EXAMPLES=10000 SUNO_MP4_CYCLES=10000 \
	SUNO_MP4_CRASH_TRACKS=600 SUNO_MP4_CRASH_KILLS=10 SUNO_MP4_SCHEMA_EXAMPLES=5000 \
		$(BIN)/python -m pytest -q -s -p no:randomly tests/test_chaos.py tests/test_hardening.py \
		tests/test_crash.py tests/test_contract_fuzz.py

# The benchmarks need matplotlib (the `bench` extra) for their plot; `make test` does not.
bench: $(STAMP) redis-server
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

# The scale-out acceptance run: 4 worker processes, redis-server, a sandbox limited to
# 20 requests/s, 2,000 jobs, every callback to worker 0, worker 2 SIGKILLed midway.
scale: $(STAMP) redis-server
	$(BIN)/python -m benchmarks.scaleout --workers 4 --jobs 2000 --rate 20 --kill 2

clean:
	rm -rf $(VENV) build dist *.egg-info
