# The two set-up commands: `make serve` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: serve test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

serve: $(INSTALLED)
	$(VENV)/bin/roomd serve

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest

bench: $(INSTALLED)
	$(VENV)/bin/python bench/room_list.py

clean:
	rm -rf $(VENV) build *.egg-info
