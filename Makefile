# Two commands on a fresh machine: `make serve` and `make test`. `make install` is the shared step.
PYTHON ?= python3.11
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1

.PHONY: install install-test chromium serve ingest test lint eval clean

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch is pinned (==2.13.0) in pyproject.toml: the CPU wheel on disk, not a CUDA build.
	$(VENV)/bin/pip install -q -e .
	touch $@

install: $(VENV)/.installed

# llama-cpp-python compiles llama.cpp (~9 min on 2 cores; pip's wheel cache makes reinstalls
# seconds). GGML_NATIVE=OFF: a -march=native build of 0.3.36 segfaulted in chat completion on
# these AVX-512 machines; the portable build (AVX2, FMA) runs SmolLM2 and gemma3 fine.
$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=OFF}" $(VENV)/bin/pip install -q -e '.[test,postgres,report,gguf]'
	touch $@

install-test: $(VENV)/.installed-test

# The web page's browser test drives Debian's Chromium (Playwright's own browser download is
# never used). Installed here when missing and apt-get can (root, Debian's archive reachable);
# otherwise the test is skipped and says why.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -o DPkg::Lock::Timeout=600 \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 chromium; } \
	  || echo "chromium could not be installed: tests/test_web.py will be skipped"

ingest: install
	$(VENV)/bin/karpathy-gpt ingest

serve: install
	$(VENV)/bin/uvicorn karpathy_app:app --host $(HOST) --port $(PORT)

test: install-test chromium
	$(VENV)/bin/ruff check src tests benchmarks karpathy_app.py
	$(VENV)/bin/python -m pytest -q -rs

eval: install
	$(VENV)/bin/karpathy-gpt eval

clean:
	rm -rf $(VENV) .kgpt .pytest_cache
