# The two commands of the README:
#   make demo   - set up .venv if needed, then run the main job on the embedded dataset (offline)
#   make test   - set up .venv if needed, then lint (ruff check, ruff format --check) and run the test suite
#                 (what CI runs through .ci/run)
#
# Everything installs into a project-local virtual environment (.venv). Override TORCH_SPEC to pick
# another PyTorch build, e.g. `make TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu124" demo`.

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP      := $(VENV)/.oodml-installed
DEMO_OUT   ?= figures

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

.PHONY: demo test venv bench clean-venv slurm-up slurm-down

venv: $(STAMP)

# compileall writes oodml's bytecode once: where PYTHONDONTWRITEBYTECODE is set (as on the development
# machine) Python never writes it on import, and every command would compile oodml again (0.1-0.3 s
# a process). A source edited later is recompiled in memory as usual: a stale .pyc is never used.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[cpu,test,parquet,tensorboard]"
	$(PY) -m compileall -q oodml benchmarks
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m oodml.demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.bench_fid
	$(PY) -m benchmarks.bench_splits
	$(PY) -m benchmarks.bench_data
	$(PY) -m benchmarks.bench_evaluate
	$(PY) -m benchmarks.bench_cli
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_sop

clean-venv:
	rm -rf $(VENV)

# A private single-node Slurm cluster in $(SLURM_DIR) (installs slurm-wlm and munge with apt when
# root and missing); then `export SLURM_CONF=$(SLURM_DIR)/slurm.conf` to use sbatch/squeue/study run.
SLURM_DIR ?= .slurm

slurm-up: $(STAMP)
	$(PY) -m oodml.testing.slurm up --dir $(SLURM_DIR)

slurm-down: $(STAMP)
	$(PY) -m oodml.testing.slurm down --dir $(SLURM_DIR)
