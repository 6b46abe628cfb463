# The shared fixtures (isolated home, W&B offline, headless rendering) are in the repository's
# top-level conftest.py, which also applies to the docstring examples under src/.
