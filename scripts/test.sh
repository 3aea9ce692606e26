#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: formatting, lints, then every test
# in release mode (the large-file tests need optimised code).
#
# It installs or starts what the tests need when they are missing; set
# MARKETFLOW_SKIP_SETUP=1 to skip that and use what the machine has.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ -z "${MARKETFLOW_SKIP_SETUP:-}" ]; then
    step "system packages"
    ./scripts/setup.sh
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings

step "cargo test"
cargo test --workspace --release

step "all tests passed"
