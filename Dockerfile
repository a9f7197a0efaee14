# The edgecloud cloud server: the teacher behind the Open Inference Protocol (docs/architecture.md).
#
#   docker build -t edgecloud-cloud .                                   # ONNX backend only, no torch (default)
#   docker build -t edgecloud-cloud-torch --build-arg WITH_TORCH=true .  # adds CPU torch for --backend torch
#   docker build -t edgecloud-cloud-gpu --build-arg WITH_TORCH=true \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .   # CUDA torch, run with --gpus all
#   docker run --rm -p 8001:8001 -v "$PWD/artifacts/demo/bundle:/bundle:ro" \
#       -e EDGECLOUD_TOKEN=change-me edgecloud-cloud
#
# The default backend (onnxruntime on teacher.onnx) needs only the `cloud` extra; torch is for the
# `torch` backend (teacher.pt) alone and is most of an image's size (docs/results.md, "Cloud image
# dependencies"), so it is opt-in. The CUDA wheels carry their own CUDA runtime, so the slim Python base
# serves every variant; BASE is there for sites that must build on their own (Python 3.11) image.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# WITH_TORCH=true installs torch for `--backend torch`; false (the default) leaves it out.
# The torch wheel index and version are build arguments so the image never drifts from the torch the
# project is tested with, and a CPU build never downloads the multi-GB CUDA wheels.
ARG WITH_TORCH=false
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, unprivileged uid, so a bundle on the host only needs to be world-readable (or owned by 10001).
RUN groupadd --system --gid 10001 edgecloud \
 && useradd --system --uid 10001 --gid edgecloud --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin edgecloud

# torch, when asked for, comes first and from its own index, before any source is copied (so a code
# change does not reinstall it): PyPI's torch is the CUDA build. Any value but true or false is a typo
# that would otherwise build the wrong image quietly.
RUN case "${WITH_TORCH}" in \
      true) python -m pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" ;; \
      false) echo "WITH_TORCH=false: no torch, the image serves the onnx backend only" ;; \
      *) echo "WITH_TORCH must be true or false, not '${WITH_TORCH}'" >&2; exit 2 ;; \
    esac

WORKDIR /opt/edgecloud
COPY pyproject.toml README.md ./
# Every package that pyproject.toml's [tool.setuptools.packages.find] include lists, one line each
# (tests/deploy/test_dockerfile.py fails when one is missing).
COPY edgecloud ./edgecloud
COPY shared ./shared
COPY networks ./networks
COPY serving ./serving
COPY compression ./compression
COPY offloading ./offloading
COPY edge_agent ./edge_agent
COPY cloud_server ./cloud_server
COPY orchestration ./orchestration
COPY splitting ./splitting
COPY testbed ./testbed
# Not editable: the image runs from site-packages, and the source copy could be dropped. Only the
# `cloud` extra: with WITH_TORCH=true torch is already in place, and nothing the server runs needs the
# `train` extra (onnx export, xgboost, ...).
RUN python -m pip install ".[cloud]"

# The bundle is mounted read-only here; the server only reads it (and verifies every sha256 first).
ENV EDGECLOUD_BUNDLE=/bundle \
    EDGECLOUD_HOST=0.0.0.0 \
    EDGECLOUD_PORT=8001 \
    MPLCONFIGDIR=/tmp/matplotlib

USER edgecloud:edgecloud
EXPOSE 8001

# slim has no curl; the standard library is enough. urlopen raises on any non-2xx, so 503 (not ready)
# and a refused connection both exit non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/v2/health/ready', timeout=4)"]

CMD ["edgecloud", "cloud", "serve", "--bundle", "/bundle", "--host", "0.0.0.0", "--port", "8001"]
