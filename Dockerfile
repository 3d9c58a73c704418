# The GPU server: API and embedded workers in one container (docs/DEPLOY.md).
#   docker compose up --build          (with compose.yaml: PostgreSQL, volumes, the GPU)
# Build args choose the CUDA base and the torch wheel index, e.g. for CUDA 12.6:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_SPEC=torch==2.13.0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    FRAMEPACK_API_DATA_DIR=/data \
    FRAMEPACK_API_HOST=0.0.0.0 \
    FRAMEPACK_API_PORT=8000

# ffmpeg libraries come inside PyAV's wheels; only Python is needed from the system.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# torch first, from the CUDA index (the constraints file leaves torch to each machine), then the rest:
# the same requirement line that CI checks with `pip install --dry-run` (tests/deploy).
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"
WORKDIR /app
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY src ./src
RUN pip install -c constraints.txt ".[server,gpu,ui]"

RUN useradd --create-home --uid 1000 framepack \
    && mkdir -p /data /cache/huggingface \
    && chown framepack:framepack /data /cache/huggingface
USER framepack
VOLUME ["/data", "/cache/huggingface"]
EXPOSE 8000

# Healthy = ready: the database answers and a worker has the model loaded (loading takes minutes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30m --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status != 200)"]

CMD ["framepack-api", "serve"]
