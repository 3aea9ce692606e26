#!/usr/bin/env bash
# Installs what the test suite needs on Debian when it is missing: a C toolchain, the
# PostgreSQL server binaries (tests start a throwaway cluster when no server is running),
# the sqlite3 shell, Chromium (the browser test of the chart page), schemathesis (the
# OpenAPI conformance test, from PyPI) and Python's websockets (the wss tests). Idempotent:
# a machine that has everything is left alone.
set -euo pipefail

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v mkfifo >/dev/null || need+=(coreutils)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
command -v chromium >/dev/null || need+=(chromium)
# promtool (Debian's prometheus package) checks the /metrics exposition.
command -v promtool >/dev/null || need+=(prometheus)
# docker-compose (Debian's package) checks docker-compose.yml; no Docker daemon is needed.
command -v docker-compose >/dev/null || need+=(docker-compose)
# rdkafka builds its bundled librdkafka with CMake, against libcurl.
command -v cmake >/dev/null || need+=(cmake)
[ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] \
    || need+=(libcurl4-openssl-dev)
# and against OpenSSL, for SASL_SSL and SCRAM.
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)

if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
else
    echo "system packages: all present"
fi

if ! python3 -m schemathesis.cli --version >/dev/null 2>&1; then
    echo "installing: schemathesis (PyPI)"
    python3 -m pip install --quiet schemathesis \
        || python3 -m pip install --quiet --break-system-packages schemathesis
else
    echo "schemathesis: present"
fi

# Python's websockets: a client other than ours for the wss tests (tests/security.rs).
if ! python3 -c "import websockets" >/dev/null 2>&1; then
    echo "installing: websockets (PyPI)"
    python3 -m pip install --quiet websockets \
        || python3 -m pip install --quiet --break-system-packages websockets
else
    echo "websockets: present"
fi

# A Kafka-protocol broker for the Kafka tests (a Rust crate; about 7 minutes to build on two
# cores the first time). The in-memory storage engine needs the `dynostore` feature.
if ! command -v tansu >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "installing: tansu (a Kafka-protocol broker, with cargo install)"
    cargo install --locked tansu --features dynostore
else
    echo "tansu: present"
fi
