# Shortcuts for the commands in the README. Run them inside the virtual environment you installed into.
PYTHON ?= python

.PHONY: help install test test-all train tensorboard lint format clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## install cellseg with its dev tools, at the tested versions
	$(PYTHON) -m pip install -c constraints.txt -e ".[dev]"

test:  ## the default test suite (what CI runs)
	$(PYTHON) -m pytest -m "not slow"

test-all:  ## every test, slow ones included
	$(PYTHON) -m pytest

train:  ## the main job: U-Net on the built-in synthetic cells
	$(PYTHON) -m cellseg.train

tensorboard:  ## browse every run under outputs/
	tensorboard --logdir outputs

lint:  ## style and static checks
	$(PYTHON) -m ruff check src tests bench
	$(PYTHON) -m ruff format --check src tests bench

format:  ## apply the formatter and safe lint fixes
	$(PYTHON) -m ruff check --fix src tests bench
	$(PYTHON) -m ruff format src tests bench

clean:  ## remove caches and build files (never outputs/)
	rm -rf build dist .pytest_cache .ruff_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
