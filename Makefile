# The two Quickstart commands: `make demo` runs the workflow on the synthetic demo data, `make test` runs
# the test suite. Each first installs the pinned dependencies into .venv (once, again when
# requirements.txt changes).
VENV := .venv
# The interpreter the venv is made with: CPython 3.11-3.13 on x86_64 Linux (checked before pip runs).
PYTHON3 ?= python3
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-fast benchmark

$(INSTALLED): requirements.txt
	$(PYTHON3) scripts/leukemia_dtl/core/supported_platform.py
	$(PYTHON3) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

# --max-threads 1: every demo job is small and runs on one thread (the rules ask for 8, as GPU nodes have them).
# One job more than the machine has cores: two Keras jobs side by side left a core idle 8.7 % of the time on
# 2 cores (the same demo took 385 s with 2 jobs at once, 361 s with 3, at the same 698 s of CPU). The demo's
# timings (Table 2, the model cards) are then taken while its jobs share the cores.
# --max-jobs-per-timespan 100/3s: while jobs wait for a core, Snakemake plans again at the end of every timespan
# of its job rate limit, and each job that ends starts another such series; every pass re-reads the sizes of the
# waiting jobs' inputs and starts a timer thread. At the default 100/1s a demo made 13,045 passes (a cProfile), and
# Snakemake's own process used 42 s of CPU against 26 s at 100/3s (its exit then waits up to 3 s for the last timer).
DEMO_JOBS := $(shell echo $$(( $$(nproc) + 1 )))
demo: $(INSTALLED)
	$(VENV)/bin/snakemake --cores $(DEMO_JOBS) --max-threads 1 --max-jobs-per-timespan 100/3s --configfile config/demo.yaml

# Three workers, one test file each at a time (tests/conftest.py starts the longest files first): one mostly
# waits on the Slurm cluster, so three keep a 2-core machine busy.
test: $(INSTALLED)
	$(PYTHON) -m pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=15

# The unit tests of every package module, in under two minutes (two workers): no Snakemake, no training process,
# no Slurm and no registry (tests/conftest.py fails a test that starts one without its marker).
test-fast: $(INSTALLED)
	$(PYTHON) -m pytest -n 2 --dist loadfile -m "not workflow and not slurm and not registry and not slow" --durations=10

# The benchmark sections a CPU finishes in minutes (training and prediction at 64 px); each prints its figures
# and writes them, with the machine, versions and commit, to results/benchmarks/<section>-<UTC time>.json.
benchmark: $(INSTALLED)
	$(PYTHON) tests/benchmark.py cache
	$(PYTHON) tests/benchmark.py evaluation
	$(PYTHON) tests/benchmark.py dryrun
	$(PYTHON) tests/benchmark.py training --model efficientnetb3 --size 64
	$(PYTHON) tests/benchmark.py prediction --model efficientnetb3 --size 64
