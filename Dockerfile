# The edgecloud cloud server: the teacher behind the Open Inference Protocol (docs/architecture.md).
#
#   docker build -t edgecloud-cloud .                                   # CPU torch (default)
#   docker build -t edgecloud-cloud-gpu \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .   # CUDA torch, run with --gpus all
#   docker run --rm -p 8001:8001 -v "$PWD/artifacts/demo/bundle:/bundle:ro" \
#       -e EDGECLOUD_TOKEN=change-me edgecloud-cloud
#
# The CUDA wheels carry their own CUDA runtime, so the slim Python base serves both; BASE is there for
# sites that must build on their own (Python 3.11) image.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# Both the torch wheel index and its version are build arguments so the image never drifts from the
# torch the project is tested with, and a CPU build never downloads the multi-GB CUDA wheels.
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

# torch first and from its own index: with it in place the `train` extra's torch range installs nothing,
# which is what keeps pip from resolving torch against PyPI (the CUDA build there).
RUN python -m pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

WORKDIR /opt/edgecloud
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY offloading ./offloading
COPY networks ./networks
COPY serving ./serving
COPY compression ./compression
COPY cloud_server ./cloud_server
COPY edge_agent ./edge_agent
COPY edgecloud ./edgecloud
# Not editable: the image runs from site-packages, and the source copy could be dropped.
RUN python -m pip install ".[cloud,train]"

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
