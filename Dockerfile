# syntax=docker/dockerfile:1
# Tenbin's image: the operator (`tenbin run`, the default) and the NVML node agent (`tenbin agent`).
#
#   docker build -t <registry>/tenbin:0.1.0 .
#
# For those with Docker. `make image` builds the same image without a Docker daemon (image/build.sh: mmdebstrap,
# requirements.lock, umoci), and that one is what tests/chart/test_chart_image.py runs.
# The base is pinned to a Python minor version and Debian release; pin it by digest in your own build
# (PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...) for byte-for-byte reproducible images.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: install tenbin and its runtime dependencies (no dev extras) into a virtualenv -------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tenbin
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY operator ./operator
# the same pinned, hashed dependencies `make image` installs (make lock writes requirements.lock)
RUN /opt/tenbin/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock \
 && /opt/tenbin/bin/pip install --no-deps . \
 && /opt/tenbin/bin/pip uninstall --yes pip setuptools \
 && /opt/tenbin/bin/python -m compileall -q /opt/tenbin/lib

# ---- runtime: the virtualenv only, as an unprivileged user --------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tenbin" \
      org.opencontainers.image.description="Tenbin: places GPU work across a hybrid fleet by availability, data residency and price" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 tenbin \
 && useradd --system --uid 10001 --gid tenbin --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin tenbin
COPY --from=builder /opt/tenbin /opt/tenbin
# Bytecode is compiled at build time: the root filesystem is read-only at run time (the chart mounts /tmp).
ENV PATH=/opt/tenbin/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes can check runAsNonRoot without resolving the name.
USER 10001:10001
WORKDIR /tmp
# 8080 metrics (/metrics), 8081 health (/healthz)
EXPOSE 8080 8081
ENTRYPOINT ["tenbin"]
CMD ["run"]
