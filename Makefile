# Two commands do all the set-up themselves: `make demo` and `make test`. They install the full
# lock (constraints-lock.txt); users pin with constraints.txt, which `make zoo-check` tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export ORT_DISABLE_TELEMETRY := 1

.PHONY: demo test lint format setup zoo-check clean

$(STAMP): pyproject.toml constraints-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints-lock.txt -e '.[train,serve,profile,dev,sweep,fast]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy offload_rl envs agents serving experiments validation

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# rl_zoo3 beside the project, installed with the user-facing constraints.txt (needs the package
# registry), trains a few thousand steps on offload_rl/SplitCache-v0 via --gym-packages envs.
# A venv of its own: the test venv stays exactly as locked.
ZOO_VENV := .venv-zoo
ZOO_STAMP := $(ZOO_VENV)/.installed

$(ZOO_STAMP): pyproject.toml constraints.txt
	test -x $(ZOO_VENV)/bin/python || $(PYTHON) -m venv $(ZOO_VENV)
	$(ZOO_VENV)/bin/pip install --quiet --upgrade pip
	$(ZOO_VENV)/bin/pip install --quiet -c constraints.txt -e '.[train]' rl_zoo3
	touch $(ZOO_STAMP)

zoo-check: $(ZOO_STAMP)
	$(ZOO_VENV)/bin/python .ci/zoo_check.py --steps 4096

clean:
	rm -rf $(VENV) $(ZOO_VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
