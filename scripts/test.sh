#!/usr/bin/env bash
# Every test of orbit: unit tests, real multi-member clusters on loopback, processes
# killed with SIGKILL, and interoperability with Debian's etcd and etcdctl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A clean clone gains nothing from incremental state; it only costs disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
cargo test --workspace --all-targets -- --test-threads=2
# The console's front-end code (type-checked, then its tests: the browser's access
# grants against this build's uplink binary, which the line above built).
npm --prefix web/console test
