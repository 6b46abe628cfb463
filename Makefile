# Two commands: `make demo` and `make test`. Both create .venv on first use; `make test` also
# creates .venv-rllib for the RLlib tests (ray[rllib] pins its own gymnasium, so they get a venv
# of their own; torch==2.13.0 is named so pip never pulls a newer one).
VENV ?= .venv
PY := $(VENV)/bin/python
RLLIB_VENV ?= .venv-rllib
RLLIB_PY := $(RLLIB_VENV)/bin/python
PYTHON ?= python3
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export SDL_VIDEODRIVER ?= dummy

.PHONY: demo test test-main test-rllib clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed-demo

$(RLLIB_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RLLIB_VENV)
	$(RLLIB_PY) -m pip install -q --upgrade pip
	$(RLLIB_PY) -m pip install -q torch==2.13.0 -e ".[test-rllib]"
	touch $@

# The library from Python (UniEnv, three formats), then the command: two CartPole runs to
# compare (random and a hand-written policy), and a gallery page of everything recorded.
demo: $(VENV)/.installed-demo
	rm -rf recordings/cartpole-random recordings/cartpole-balance
	$(PY) examples/demo.py --out recordings/unienv
	$(VENV)/bin/episode-recorder record CartPole-v1 --episodes 4 --seed 0 --out recordings/cartpole-random --quiet
	$(VENV)/bin/episode-recorder record CartPole-v1 --episodes 4 --seed 0 --out recordings/cartpole-balance \
	    --policy examples/demo.py:balance --env-kwargs '{"max_episode_steps": 120}' --quiet
	$(VENV)/bin/episode-recorder gallery recordings

test: test-main test-rllib

test-main: $(VENV)/.installed-test
	$(PY) -m pytest -q

test-rllib: $(RLLIB_VENV)/.installed
	$(RLLIB_PY) -m pytest -q tests_rllib

clean:
	rm -rf $(VENV) $(RLLIB_VENV) recordings .pytest_cache
