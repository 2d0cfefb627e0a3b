#!/usr/bin/env bash
# The project's test command (README.md): formatting, lints, every test of the workspace,
# including the Python peer-implementation checks and the fuzz-corpus regression.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
