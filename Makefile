# Fresh machine: `make demo` (set up + train + evaluate + run the agent), `make test` (the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := build/demo

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[train,engine,demo,test]'
	touch $@

demo: setup
	bash deploy/demo.sh

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf build runs .pytest_cache
