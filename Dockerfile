# csbsr as a container: `docker run IMAGE <csbsr command>`. How to build and run it: docs/docker.md.
#
# Volumes: /data  inputs (read-only is fine) and /data/models, extra model cards + weights ($CSBSR_MODELS)
#          /out   run folders (the working directory; writable by uid 10001)
# Nothing is fetched at run time: the models come from the image (the zoo) or the mounted /data/models.
#
# Build arguments (all optional):
#   BASE_IMAGE   default NVIDIA's CUDA 13.0 runtime on Ubuntu 24.04 (torch 2.14.1 is built for CUDA 13.0;
#                onnxruntime-gpu needs Python >= 3.11). Any Debian/Ubuntu image works: Python is installed
#                when missing; docker/make-base-image.sh makes a local Debian one.
#   TORCH_SPEC   torch/torchvision requirements, installed first (default: PyPI's CUDA build)
#   PIP_EXTRA_INDEX_URL  an extra package index for every pip step, e.g. https://download.pytorch.org/whl/cpu
#   CSBSR_EXTRA  gpu (onnxruntime-gpu, default) or onnx (CPU onnxruntime); the two never share an image
# Layers, from the least to the most often rebuilt: torch (TORCH_SPEC), the other dependencies (from
# pyproject.toml, pinned by docker/constraints.txt, and CSBSR_EXTRA), then the package itself with --no-deps:
# editing a .py file rebuilds only that last, small layer.
# Build inputs (BuildKit):
#   docker/wheels/   local wheels pip prefers to PyPI's (--find-links), e.g. a CPU torch; empty by default
#   --secret id=pip_ca,src=CA.pem   a CA bundle for pip behind a TLS-intercepting proxy
ARG BASE_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

FROM ${BASE_IMAGE} AS python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# CUDA images ship without Python. Versions are the base release's, so they are not pinned here.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

FROM python AS build
ARG TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
# Declared, so that --build-arg reaches pip (as its environment variable); unset by default.
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/csbsr
# torch alone first: the largest layer, rebuilt only when TORCH_SPEC or the base changes. pip's cache is a
# BuildKit cache mount: rebuilds reuse downloads, and no layer keeps them.
RUN --mount=type=bind,source=docker/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/csbsr/bin/pip install --find-links /wheels ${TORCH_SPEC}
# The other dependencies, read from pyproject.toml and pinned by the constraints file: declared after the
# torch layer, CSBSR_EXTRA never throws that away.
ARG CSBSR_EXTRA=gpu
RUN --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=docker/constraints.txt,target=/src/constraints.txt \
    --mount=type=bind,source=docker/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/csbsr/bin/python -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"][sys.argv[2]]))' \
        /src/pyproject.toml "${CSBSR_EXTRA}" >/tmp/requirements.txt \
    && /opt/csbsr/bin/pip install --find-links /wheels -c /src/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
# The package last, without dependencies. The source is bind-mounted (read-write scratch copy), so no layer
# keeps it; pip builds the wheel from it.
RUN --mount=type=bind,target=/src,rw \
    --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/csbsr/bin/pip install --no-deps /src \
    && /opt/csbsr/bin/csbsr env --strict

FROM python AS runtime
COPY --from=build /opt/csbsr /opt/csbsr
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin csbsr \
    && mkdir -p /data/models /out \
    && chown 10001:10001 /out
# Caches (onnxruntime's telemetry id, torch) go to /tmp, so the root file system can be read-only.
ENV PATH=/opt/csbsr/bin:${PATH} \
    CSBSR_MODELS=/data/models \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/data", "/out"]
WORKDIR /out
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENTRYPOINT ["csbsr"]
# csbsr runs as PID 1, which ignores SIGTERM: `docker stop` and Kubernetes send SIGINT instead, which csbsr
# handles as Ctrl-C (partial outputs removed, exit code 130, --resume continues).
STOPSIGNAL SIGINT
CMD ["--help"]
