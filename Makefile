# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
R ?= tiny

# Offline by default: nothing here needs the model hub, and telemetry has nowhere to go.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export AXOLOTL_DO_NOT_TRACK ?= 1
export WANDB_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo recipe test test-fast lint clean

# torch first and pinned: a looser requirement resolved later could pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# CPU float results follow the thread count and the CPU's vector kernels (AVX-512 or AVX2, Intel or AMD): these
# make the demo's numbers the same on any x86-64 machine (harness.tiny.student.cpu_numerics_env; the tiny student's
# build pins them itself). Elsewhere they are ignored.
DEMO_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MKL_DYNAMIC=FALSE OPENBLAS_NUM_THREADS=1 \
	ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=AVX2

demo: install  ## the embedded tiny default, end to end (CPU, offline)
	env $(DEMO_ENV) $(VENV)/bin/cgd run recipes/tiny.yaml

recipe: install  ## make recipe R=NAME runs recipes/NAME.yaml
	$(VENV)/bin/cgd run recipes/$(R).yaml

test: install
	$(VENV)/bin/pytest

test-fast: install
	$(VENV)/bin/pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check harness tests bench

clean:
	rm -rf runs
