# syntax=docker/dockerfile:1
# The deepseek-operator image: `deepseek-operator run` (Kopf) as a non-root user on a read-only
# root filesystem. The same image carries deepseek_serving, so the chart's optional NVML
# exporter DaemonSet can run `python -m deepseek_serving.nvml_exporter` from it; the `exporter`
# extra (grpcio) lets it label GPU series with the pod holding the GPU (kubelet pod-resources).
#
#   docker build -t ghcr.io/deepseek-operator/deepseek-operator:0.1.0 .
#
# Build stage: a wheel of the project (operator/ and serving/ packages) and its dependencies.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY serving/ serving/
RUN pip wheel --wheel-dir /wheels ".[exporter]"

# Runtime stage: only the installed wheels, no compilers or sources.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "deepseek-operator[exporter]" \
    && groupadd --system --gid 10001 operator \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin operator
# Numeric so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["deepseek-operator"]
CMD ["run", "--all-namespaces"]
