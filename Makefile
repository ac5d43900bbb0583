# The set-up commands: `make serve`, `make test` and `make lint`. Each creates .venv and installs on first use,
# from requirements.lock (every runtime, test and dev dependency pinned, with hashes); `make lock` remakes the lock.
PYTHON ?= python3
VENV ?= .venv
INSTALLED := $(VENV)/.installed
PIP := $(VENV)/bin/python -m pip --disable-pip-version-check
LOCK := requirements.lock
UV_VERSION := 0.13.9
LINT_PATHS := roomd tests bench

.PHONY: serve test test-fast lint lock bench clean redis-server chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(LOCK) pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet --require-hashes -r $(LOCK)
	$(PIP) install --quiet --no-deps -e .
	$(PIP) check  # a dependency pyproject.toml names but the lock lacks: run `make lock`
	touch $@

serve: $(INSTALLED)
	$(VENV)/bin/roomd serve

test: $(INSTALLED) redis-server chromium
	$(VENV)/bin/python -m pytest

# The cluster tests start a real redis-server on loopback: Debian's package, installed when missing
# (as root, as in CI; otherwise say what to do). ROOMD_TEST_REDIS_SERVER may name another binary.
redis-server:
	@if [ -z "$$ROOMD_TEST_REDIS_SERVER" ] && ! command -v redis-server >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's redis-server for the cluster tests"; \
			(apt-get install -y -qq redis-server >/dev/null 2>&1 || \
			 (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)) && \
			(systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true); \
		else \
			echo "the tests need redis-server: install it (apt-get install redis-server) or set ROOMD_TEST_REDIS_SERVER"; \
			exit 1; \
		fi; \
	fi

# The console's browser test drives Debian's headless Chromium: installed when missing (as root);
# without it that one test is skipped and says why.
chromium:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium and chromium-driver for the console's browser test"; \
			apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
			(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
			echo "chromium could not be installed: the console's browser test will be skipped"; \
		else \
			echo "no chromium: the console's browser test will be skipped (apt-get install chromium chromium-driver)"; \
		fi; \
	fi

test-fast: $(INSTALLED) redis-server
	$(VENV)/bin/python -m pytest -m "not slow"

# All three run, so that one run shows every finding; it fails if any of them does.
# mypy: strict, on roomd/ (see [tool.mypy] in pyproject.toml).
lint: $(INSTALLED)
	@status=0; \
	for check in 'ruff check $(LINT_PATHS)' 'ruff format --check $(LINT_PATHS)' mypy; do \
		echo "$(VENV)/bin/$$check"; \
		$(VENV)/bin/$$check || status=1; \
	done; \
	exit $$status

# Re-resolves the newest versions that pyproject.toml allows, for Python 3.11 and later on any platform.
lock: | $(VENV)/bin/python
	$(PIP) install --quiet 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra dev --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command 'make lock' --quiet --output-file $(LOCK)

bench: $(INSTALLED)
	$(VENV)/bin/python bench/room_list.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
