#!/usr/bin/env bash
# Installs what building and testing orbit needs beside the Rust toolchain, once:
# protoc (for the gRPC code), Debian's etcd-server and etcd-client (the anchor etcd and
# etcdctl that interoperability tests and benchmarks run against), and from PyPI
# Python's eth-account (the payments interoperability test signs with it) and
# prometheus-client (its parser reads the processes' /metrics in tests) and
# kubernetes-validate (the deployment manifests are checked against its schemas) and
# aiosmtpd (a real SMTP server for the console's mail), Debian's Chromium (the
# console's browser test drives it with Playwright), and the console front end's npm
# packages.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
py=()
python3 -c "import eth_account" >/dev/null 2>&1 || py+=(eth-account)
python3 -c "import prometheus_client.openmetrics.parser" >/dev/null 2>&1 || py+=(prometheus-client)
# A real SMTP server for the console's mail test.
python3 -c "import aiosmtpd" >/dev/null 2>&1 || py+=(aiosmtpd)
command -v kubernetes-validate >/dev/null 2>&1 || py+=(kubernetes-validate)
if [ ${#py[@]} -gt 0 ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${py[@]}"
fi
# The console's front end (web/console): its packages from the npm registry, as the
# lock file pins them, installed again only when the lock file changed.
if [ ! -f web/console/node_modules/.package-lock.json ] ||
   [ web/console/package-lock.json -nt web/console/node_modules/.package-lock.json ]; then
  npm ci --prefix web/console --no-audit --no-fund --loglevel=error >/dev/null
fi
