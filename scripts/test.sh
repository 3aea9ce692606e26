#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: formatting, lints, then every test
# in release mode (the large-file tests need optimised code).
#
# It installs what the tests need when it is missing (scripts/setup.sh; set
# MARKETFLOW_SKIP_SETUP=1 to skip that). PostgreSQL: MARKETFLOW_TEST_DATABASE_URL when
# set, else the local server on 127.0.0.1:5432 when it answers, else each test binary
# starts a throwaway cluster of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ -z "${MARKETFLOW_SKIP_SETUP:-}" ]; then
    step "system packages"
    ./scripts/setup.sh
fi

# TimescaleDB from the vendored source beside this checkout (../shared), for the tests that
# run a cluster with it preloaded; without ../shared they say they were skipped.
installer="../shared/tools/install-timescaledb.sh"
if [ -f "$installer" ] && [ -z "${MARKETFLOW_SKIP_SETUP:-}" ]; then
    step "TimescaleDB (../shared/vendor)"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo bash "$installer"
fi

step "PostgreSQL for the tests"
if [ -z "${MARKETFLOW_TEST_DATABASE_URL:-}" ]; then
    local_url="postgres://postgres@127.0.0.1:5432/postgres"
    if command -v psql >/dev/null && psql "$local_url" -qAtc 'SELECT 1' >/dev/null 2>&1; then
        export MARKETFLOW_TEST_DATABASE_URL="$local_url"
    fi
fi
echo "${MARKETFLOW_TEST_DATABASE_URL:-throwaway clusters started by the tests}"

step "cargo fmt --check"
cargo fmt --all -- --check
# cargo fmt reaches a module only through a `mod` line it can see; the component folders are
# declared by a macro (`components!`), so every tracked .rs file is checked as well.
git ls-files -z '*.rs' | xargs -0 rustfmt --check --edition 2021

step "cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings

step "cargo test"
# Tests that cannot run here (a missing tool) say so in this file; under CI=true they fail.
export MARKETFLOW_SKIPS="$PWD/target/test-skips.txt"
mkdir -p target
: > "$MARKETFLOW_SKIPS"
cargo test --workspace --release

# The storage and server suites once more, on a throwaway cluster with TimescaleDB preloaded
# (hypertables, compression, retention and continuous aggregates under the same queries).
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -n "$pgbin" ] && [ -f "$("$pgbin/pg_config" --sharedir)/extension/timescaledb.control" ]; then
    step "storage and server suites on TimescaleDB"
    tsdb="$(mktemp -d /tmp/marketflow-tsdb.XXXXXX)"
    as_pg=()
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$tsdb"
        as_pg=(runuser -u postgres --)
    fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "${as_pg[@]}" "$pgbin/initdb" -A trust -U postgres -E UTF8 -D "$tsdb/data" >/dev/null
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$tsdb/data" -l "$tsdb/log" -w -o \
        "-p $port -c listen_addresses=127.0.0.1 -k $tsdb -c fsync=off -c shared_preload_libraries=timescaledb" \
        start >/dev/null
    trap '"${as_pg[@]}" "$pgbin/pg_ctl" -D "$tsdb/data" -m immediate stop >/dev/null 2>&1; rm -rf "$tsdb"' EXIT
    echo "postgres://postgres@127.0.0.1:$port/postgres (timescaledb preloaded)"
    MARKETFLOW_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
        cargo test --release --test store --test server --test history --test openapi
    MARKETFLOW_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
        cargo test --release --test predecessor -- from_postgres
elif [ -f "$installer" ] && [ -n "${CI:-}" ]; then
    echo "TimescaleDB is not installed though $installer is here" >&2
    exit 1
fi

if [ -s "$MARKETFLOW_SKIPS" ]; then
    step "skipped tests"
    cat "$MARKETFLOW_SKIPS"
fi
step "all tests passed"
