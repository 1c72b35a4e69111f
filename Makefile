# autopilot_ros development entry points. The README's two commands are `make demo` and
# `make test`; both set everything up from a fresh Debian 12 machine with Python 3.11.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The venv lives outside the source tree and `.venv` links to it: colcon's CMake refuses
# exported include paths inside the package source (the package root is the repo root),
# and the wheels' numpy include path would be one.
CACHE := $(HOME)/.cache/autopilot_ros
CHECKOUT_ID := $(shell printf '%s' '$(CURDIR)' | md5sum | cut -c1-10)
VENV_HOME ?= $(CACHE)/venv-$(CHECKOUT_ID)
VENV := .venv
DEPS_STAMP := $(VENV_HOME)/.autopilot_ros-deps
BUILD_STAMP := install/.autopilot_ros-build
# `make test-core`: the pip route (setup.py) in a venv of its own, without colcon or ROS.
CORE_VENV ?= $(CACHE)/core-venv-$(CHECKOUT_ID)
CORE_STAMP := $(CORE_VENV)/.autopilot_ros-core
# torch first and alone, at the pin (only that build is on the machines' disk): pip must
# never resolve another one (several GB).
TORCH := $(shell grep -m1 '^torch==' constraints.txt)
# `make lint`: ruff alone, at its pin, in a venv of its own.
LINT_VENV ?= $(CACHE)/lint-venv-$(CHECKOUT_ID)
LINT_STAMP := $(LINT_VENV)/.autopilot_ros-ruff

# DDS stays on this machine, on a domain of this run's own (tests claim their own ID too).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1
export ROS_DOMAIN_ID ?= $(shell echo $$(( $$$$ % 80 + 20 )))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SOURCES := CMakeLists.txt package.xml $(shell find autopilot_ros training msg launch config \
	resource scripts -type f -not -path '*/__pycache__/*' 2>/dev/null)
# What the pip route installs: the package, its messages and its metadata.
PIP_SOURCES := setup.py pyproject.toml $(shell find autopilot_ros training msg -type f \
	-not -path '*/__pycache__/*' 2>/dev/null)
# Run inside the venv with the built package sourced.
ROS_ENV := source $(VENV)/bin/activate && source install/setup.bash &&

.PHONY: help setup test test-core demo bench lint model clean
help:
	@echo 'make demo   set up, then steer the simulated boat with the shipped model'
	@echo 'make test   set up, then run the whole test suite'
	@echo 'make test-core  the tests that need no DDS, on the pip route: no colcon, no ROS'
	@echo 'make setup  create the venv, install dependencies, colcon build (idempotent)'
	@echo 'make bench  run the benchmarks under bench/'
	@echo 'make model  reproduce the shipped model: expert bags, training, DAgger, verdict'
	@echo 'make lint   ruff (in a small venv of its own, no setup)'

setup: $(BUILD_STAMP)

$(DEPS_STAMP): requirements.txt constraints.txt tools/fix_ros_wheels.py
	@test -n '$(PYTHON)' || { echo 'setup: python3.11 not found (apt-get install python3 python3-venv)'; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo 'setup: the ROS 2 Kilted wheels need Python 3.11; $(PYTHON) is not'; exit 1; }
	@echo "setup: venv in $(VENV_HOME)"
	@test -x $(VENV_HOME)/bin/python || $(PYTHON) -m venv $(VENV_HOME) || \
		{ echo 'setup: venv failed (apt-get install python3-venv)'; exit 1; }
	ln -sfn $(VENV_HOME) $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -c constraints.txt
	$(VENV)/bin/python tools/fix_ros_wheels.py
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	@test -e $(VENV) || ln -sfn $(VENV_HOME) $(VENV)
	source $(VENV)/bin/activate && \
		export AMENT_PREFIX_PATH=$$VIRTUAL_ENV CMAKE_PREFIX_PATH=$$VIRTUAL_ENV && \
		colcon --log-base build/log build --event-handlers console_cohesion- summary+ \
			--cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$(VENV_HOME)/bin/python
	touch $@

test: setup
	$(ROS_ENV) pytest

# The pip route a laptop user takes (`pip install '.[train]'`), tested without ROS: a venv
# of its own with the package installed from setup.py, none of the colcon environment, and
# only the tests not marked `dds` (pyproject.toml). pip reinstalls the package from the
# source tree whenever a source changes.
$(CORE_STAMP): $(PIP_SOURCES) constraints.txt
	@test -n '$(PYTHON)' || { echo 'test-core: python3.11 not found'; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo 'test-core: $(TORCH) is on disk for Python 3.11 only; $(PYTHON) is not'; exit 1; }
	@test -n '$(TORCH)' || { echo 'test-core: no torch== pin in constraints.txt'; exit 1; }
	@echo "test-core: venv in $(CORE_VENV)"
	@test -x $(CORE_VENV)/bin/python || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/pip install -q '$(TORCH)'
	rm -rf build/lib build/bdist.*  # setuptools' leftovers: a deleted module would ship
	$(CORE_VENV)/bin/pip install -q -c constraints.txt '.[train,test]'
	touch $@

test-core: $(CORE_STAMP)
	env -u PYTHONPATH -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH -u COLCON_PREFIX_PATH \
		-u LD_LIBRARY_PATH $(CORE_VENV)/bin/pytest -m 'not dds'

demo: setup
	$(ROS_ENV) python -P -m autopilot_ros.demo  # -P: the installed package, not ./autopilot_ros

bench: setup
	$(ROS_ENV) python -P bench/bench_control_step.py
	$(ROS_ENV) python -P bench/bench_training.py

# The shipped model, from scratch: 48 expert demonstration bags (6 scenarios x 8 seeds),
# training with 3 DAgger rounds, then the closed-loop verdict. About 20 min on 2 cores.
# Writes models/autopilot.*; shipping is a deliberate copy to resource/ (see its card).
TRAIN := $(ROS_ENV) python -P -m autopilot_ros.training.cli
MODEL_NOTE := Trained on the simulated yacht of this package only, from its expert helmsman. A real boat steers differently: with `hand_steering` on, steer by hand, record, and train a model of your own (README, Recording and training); the safety layer and the PD fallback hold whatever model runs. From scratch: `make model` in the repository records the bags first, with `autopilot-train simulate --out data/demos --seeds 8` (the expert at imperfection 0.3), then runs the command above.
model: setup
	test -d data/demos || { $(TRAIN) simulate --out data/demos --seeds 8; }
	$(TRAIN) --bags data/demos --out models/autopilot --dagger 3 --dagger-seeds 3 \
		--card-note '$(MODEL_NOTE)'

$(LINT_STAMP): constraints.txt
	@test -n '$(PYTHON)' || { echo 'lint: python3 not found'; exit 1; }
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -q -c constraints.txt ruff
	touch $@

lint: $(LINT_STAMP)
	$(LINT_VENV)/bin/ruff check .

clean:
	rm -rf build install log
