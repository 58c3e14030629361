# syntax=docker/dockerfile:1
# Build stage: compilers and build tools live here only.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tetrapipe ./tetrapipe
# the shipped rules and tracing policies go into the wheel (tetrapipe.bundled_rules / _policies)
COPY rules ./rules
COPY tracing-policies ./tracing-policies
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: the wheels, the rules, the policies, the samples; no compiler, non-root.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tetrapipe
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
COPY samples /opt/tetrapipe/samples
ENV TETRAPIPE_LAKE=/data/lake \
    PYTHONUNBUFFERED=1
RUN mkdir -p /data && chown tetrapipe /data
VOLUME ["/data"]
USER 10001
WORKDIR /data
ENTRYPOINT ["tetrapipe"]
CMD ["--help"]
