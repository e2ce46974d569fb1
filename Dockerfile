# Images for the matching-engine shard, the edge gateway and the load generator (one file, three targets):
#   docker build --target shard   -t matchlab/me-shard:0.1.0 .
#   docker build --target gateway -t matchlab/edge-gateway:0.1.0 .
#   docker build --target loadgen -t matchlab/loadgen:0.1.0 .   (in-cluster load: --load-from cluster)
# Slim base, runtime dependencies only (no test tooling), non-root user, fixed tags.
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY docker/requirements-runtime.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
COPY pyproject.toml README.md /app/
COPY src /app/src
RUN pip install --no-deps /app && useradd --uid 10001 --create-home --shell /usr/sbin/nologin matchlab \
    && mkdir /data && chown matchlab /data
USER 10001
EXPOSE 8080 9091
ENV BIND_HOST=0.0.0.0

FROM base AS shard
ENV WAL_PATH=/data/wal.log
CMD ["python", "-m", "matchlab.shard"]

FROM base AS gateway
CMD ["python", "-m", "matchlab.gateway"]

FROM base AS loadgen
ENTRYPOINT ["python", "-m", "matchlab.loadgen"]
