# One image for every batchgate service of docker-compose.yml: api, worker, beat, flower.
# No config and no secret is baked in: the config is mounted, secrets come from the environment.

# Build stage: wheels for batchgate and every dependency (flower included, for the monitor).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY batchgate batchgate
COPY api api
COPY workers workers
COPY schedulers schedulers
COPY config config
RUN pip wheel --wheel-dir /wheels ".[flower]"

# Runtime stage: the installed package only, run by an unprivileged user.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BATCHGATE_CONFIG=/etc/batchgate/config.yaml \
    BATCHGATE_FILES_DIR=/var/lib/batchgate/files
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "batchgate[flower]" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/batchgate \
               --shell /usr/sbin/nologin batchgate \
    && mkdir -p /etc/batchgate /var/lib/batchgate/files \
    && chown -R batchgate:batchgate /var/lib/batchgate
# A named volume mounted at /var/lib/batchgate/files starts as a copy of it: owned by batchgate.
USER batchgate
WORKDIR /var/lib/batchgate
EXPOSE 4000
ENTRYPOINT ["batchgate"]
CMD ["api", "--host", "0.0.0.0", "--port", "4000"]
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["batchgate", "healthcheck", "--url", "http://127.0.0.1:4000"]
