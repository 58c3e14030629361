# syntax=docker/dockerfile:1
# tetrapipe in a container. Its defaults detect: `docker run --rm tetrapipe` ingests the shipped
# samples into /data/lake and prints what the shipped rules find in them. Any other command is
# given as arguments: `docker run --rm -v lake:/data tetrapipe query late-shells`.
#
#   docker build -t tetrapipe .          # wheels built in the build stage, from PyPI
#
# Without a registry or an index (tests/test_image.py, with buildah; scripts/build_image.py):
# BASE names any image with Python 3.11 and its venv module, and a named build context `wheels`
# (a directory of wheels built elsewhere with `pip wheel '.[fast]' -w DIR`) takes the place of the
# `wheels` stage below, so the build stage is skipped:
#
#   docker build --build-arg BASE=my-python:3.11 --build-context wheels=DIR -t tetrapipe .

ARG BASE=python:3.11-slim

# Build stage: compilers and build tools live here only.
FROM ${BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tetrapipe ./tetrapipe
# the shipped rules, tracing policies and sample logs go into the wheel (tetrapipe.bundled_*)
COPY rules ./rules
COPY tracing-policies ./tracing-policies
COPY samples ./samples
# pip from a venv: Debian's python3 has none of its own, python:3.11-slim's works the same way
# [fast]: confluent-kafka (librdkafka) for collect/process/forward/status, their default when installed
RUN python3 -m venv /build && /build/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels '.[fast]'

# tetrapipe's wheel and its dependencies' wheels, at the root: what the runtime stage installs.
FROM scratch AS wheels
COPY --from=build /wheels/ /

# Runtime stage: a venv holding only the wheels, plus the samples; no compiler, non-root.
FROM ${BASE}
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tetrapipe
# bind-mounted, not copied: the wheels (~160 MB) leave no layer behind
RUN --mount=type=bind,from=wheels,target=/wheels \
    python3 -m venv /opt/tetrapipe/venv \
    && /opt/tetrapipe/venv/bin/pip install --no-cache-dir --no-index --disable-pip-version-check /wheels/*.whl
COPY samples /opt/tetrapipe/samples
ENV PATH=/opt/tetrapipe/venv/bin:$PATH \
    TETRAPIPE_LAKE=/data/lake \
    PYTHONUNBUFFERED=1
RUN mkdir -p /data && chown 10001:10001 /data
VOLUME ["/data"]
USER 10001
# no ./rules here, so the rules shipped in the wheel are the ones that run
WORKDIR /data
ENTRYPOINT ["tetrapipe"]
CMD ["ingest", "/opt/tetrapipe/samples"]
