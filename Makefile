# Two commands on a fresh machine: `make serve` and `make test`. `make install` is the shared step.
PYTHON ?= python3.11
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1

# Every install takes the exact versions in constraints.txt (`make lock` refreshes it).
LOCK := constraints.txt
PIP := $(VENV)/bin/pip install -q -c $(LOCK)
EXTRAS := test,postgres,report,gguf,bench
# llama-cpp-python compiles llama.cpp (~9 min on 2 cores; pip's wheel cache makes reinstalls
# seconds). GGML_NATIVE=OFF: a -march=native build of 0.3.36 segfaulted in chat completion on
# these AVX-512 machines; the portable build (AVX2, FMA) runs SmolLM2 and gemma3 fine.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: install install-test lock chromium node-deps serve ingest test lint eval clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) pip
	# torch==2.13.0+cpu: the CPU wheel on disk, not a multi-GB CUDA build.
	$(PIP) -e .
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml $(LOCK)
	$(PIP) -e '.[$(EXTRAS)]'
	touch $@

install-test: $(VENV)/.installed-test

# Re-resolve the newest releases pyproject.toml admits, in a throwaway venv, into constraints.txt.
# Then `make clean test`; commit the new constraints.txt only if that passes.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q -e '.[$(EXTRAS)]'
	{ sed -n '/^#/p' $(LOCK); .lock-venv/bin/pip freeze --all --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .lock-venv

# The web page's browser test drives Debian's Chromium (Playwright's own browser download is
# never used). Installed here when missing and apt-get can (root, Debian's archive reachable);
# otherwise the test is skipped and says why.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -o DPkg::Lock::Timeout=600 \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 chromium; } \
	  || echo "chromium could not be installed: tests/test_web.py will be skipped"

# The original front-end's SSE client (@microsoft/fetch-event-source), run from Node by
# tests/test_clients.py: installed with `npm ci` from tests/node/package-lock.json (exact
# versions) into the git-ignored tests/node/node_modules. Without npm (or the registry), that
# test is skipped and says why.
NODE_DIR := tests/node
node-deps:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "npm is not installed: tests/test_clients.py's fetch-event-source test will be skipped"; \
	elif ! test $(NODE_DIR)/node_modules/.package-lock.json -nt $(NODE_DIR)/package-lock.json; then \
	  cd $(NODE_DIR) && npm ci --no-audit --no-fund \
	  || echo "npm ci failed: tests/test_clients.py's fetch-event-source test will be skipped"; \
	fi

ingest: install
	$(VENV)/bin/karpathy-gpt ingest

# Ingest first: the first time, the model is adapted to the corpus (10-25 min on 2 cores, with
# progress) and the index built; afterwards it finds both and returns in a second or two.
serve: install
	$(VENV)/bin/karpathy-gpt ingest
	$(VENV)/bin/uvicorn karpathy_app:app --host $(HOST) --port $(PORT)

# The tests' index of the real corpus is built (and the model adapted) here, with progress,
# rather than inside the first test server's start-up wait.
test: install-test chromium node-deps
	$(VENV)/bin/ruff check src tests benchmarks karpathy_app.py
	KGPT_INDEX_DIR=.kgpt/test-index $(VENV)/bin/karpathy-gpt ingest
	$(VENV)/bin/python -m pytest -q -rs

eval: install
	$(VENV)/bin/karpathy-gpt eval

clean:
	rm -rf $(VENV) .kgpt .pytest_cache $(NODE_DIR)/node_modules
