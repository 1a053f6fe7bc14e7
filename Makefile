# Quick start: `make demo` runs the main job, `make test` runs the tests.
# Both install first (a .venv in this folder) when needed.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := data/sequences
OUT    := out

.PHONY: install demo test test-slow lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# CPU build of torch first, so that nothing pulls a CUDA build later.
	$(PY) -m pip install --quiet torch==2.13.0
	# NNCodec builds from source (g++); its declared dependencies would pull a CUDA torch and
	# torchvision, and nnslim uses only its coding core (numpy), so it goes in without them.
	command -v g++ >/dev/null || (apt-get update -qq && apt-get install -y -qq g++)
	$(PY) -m pip install --quiet --no-deps nncodec==2.1.3
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/nnslim demo --sequences $(DATA) --out $(OUT)/demo --json $(OUT)/demo.json

test: install
	$(VENV)/bin/pytest -q

test-slow: install
	$(VENV)/bin/pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(OUT) $(DATA)
