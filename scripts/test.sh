#!/usr/bin/env bash
# Every test of orbit: unit tests, real multi-member clusters on loopback, processes
# killed with SIGKILL, and interoperability with Debian's etcd and etcdctl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-targets -- --test-threads=2
