#!/usr/bin/env bash
# orbit's main job on its embedded defaults: a single-member store that keeps its data
# in ./default.orbit and serves the etcd API on http://127.0.0.1:2379.
# Extra arguments go to `satellite storage init` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p satellite
exec target/release/satellite storage init "$@"
