# Two commands: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export SDL_VIDEODRIVER ?= dummy

.PHONY: demo test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed-demo

# The library from Python (UniEnv, three formats), then the command: two CartPole runs to
# compare (random and a hand-written policy), and a gallery page of everything recorded.
demo: $(VENV)/.installed-demo
	rm -rf recordings/cartpole-random recordings/cartpole-balance
	$(PY) examples/demo.py --out recordings/unienv
	$(VENV)/bin/episode-recorder record CartPole-v1 --episodes 4 --seed 0 --out recordings/cartpole-random --quiet
	$(VENV)/bin/episode-recorder record CartPole-v1 --episodes 4 --seed 0 --out recordings/cartpole-balance \
	    --policy examples/demo.py:balance --env-kwargs '{"max_episode_steps": 120}' --quiet
	$(VENV)/bin/episode-recorder gallery recordings

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) recordings .pytest_cache
