# marketflow's image: built with cargo, run on debian-slim as a non-root user with the
# binary and the pipelines only.
#   docker build -t marketflow .
#   docker run --rm -p 8000:8000 marketflow            # the embedded demo on http://localhost:8000/
FROM rust:1.95-bookworm AS build
# rdkafka builds its bundled librdkafka with CMake, against libcurl and OpenSSL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Debug info goes to its own file (marketflow.debug, linked from the binary by its
# build id): the image carries the stripped binary, `docker build --target debug-symbols
# -o out .` exports the symbols for perf or gdb.
RUN cargo build --release --locked --bin marketflow \
    && objcopy --only-keep-debug target/release/marketflow target/release/marketflow.debug \
    && objcopy --strip-all --add-gnu-debuglink=target/release/marketflow.debug target/release/marketflow \
    && ls -l target/release/marketflow target/release/marketflow.debug

FROM scratch AS debug-symbols
COPY --from=build /src/target/release/marketflow.debug /

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libcurl4 libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/marketflow marketflow
COPY --from=build /src/target/release/marketflow /usr/local/bin/marketflow
COPY pipelines /etc/marketflow/pipelines
USER marketflow
WORKDIR /var/lib/marketflow
# Containers are reached from outside: listen on every interface.
ENV MARKETFLOW_LISTEN=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=6 \
    CMD curl -fsS "http://127.0.0.1:${MARKETFLOW_LISTEN##*:}/health/live" >/dev/null || exit 1
ENTRYPOINT ["marketflow"]
# The demo has no API keys: --insecure lets it listen on 0.0.0.0 inside the container.
# A pipeline with `server.auth` (or `serve --keys-file`) needs no flag.
CMD ["run", "--insecure"]
